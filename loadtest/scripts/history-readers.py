#!/usr/bin/env python3
"""History readers beside editors (docs/PERFORMANCE.md): builds a document of N ops (default
100,000) over REST with relaxed durability, restarts the server strict with defaults, then
measures an editor pair (coedit-loadtest) alone and while 4 readers page through the whole
history. Prints the editors' ack latency, ops acknowledged and the server's RSS.

Usage: history-readers.py PATH/TO/coedit LABEL   (N=... to change the size; needs
target/release/coedit-loadtest). Everything on 127.0.0.1; the server it starts is stopped.
"""
import http.client, json, subprocess, sys, tempfile, threading, time, os, re
BIN, LABEL = sys.argv[1], sys.argv[2]
N = int(os.environ.get("N", "100000"))
d = tempfile.mkdtemp()
def start(cfg):
    open(d+"/c.toml","w").write(cfg)
    p = subprocess.Popen([BIN,"serve","--bind","127.0.0.1:0","--data-dir",d+"/data","--config",d+"/c.toml"],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
    line = p.stdout.readline()
    addr = line.strip().split()[-1]
    host, port = addr.split(":")
    return p, host, int(port)
p, host, port = start('[storage]\ndurability = "relaxed"\n[session]\nmax_ops_per_s = 1000000.0\n')
c = http.client.HTTPConnection(host, port)
for rev in range(N):
    op = '["x"]' if rev == 0 else f'[{rev},"x"]'
    c.request("POST", "/api/docs/load-0/ops", body=f'{{"base_rev":{rev},"op":{op}}}', headers={"Content-Type":"application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
p.terminate(); p.wait()
p, host, port = start("")
pid = p.pid
stop = False
pages = [0]
def reader():
    cc = http.client.HTTPConnection(host, port, timeout=60)
    while not stop:
        frm = 0
        while True:
            cc.request("GET", f"/api/docs/load-0/ops?from={frm}")
            r = cc.getresponse(); body = r.read(); pages[0] += 1
            v = json.loads(body)
            nxt = v.get("next")
            if nxt is None or stop: break
            frm = nxt
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
def loadtest(tag):
    out = subprocess.run(["os.environ.get("LOADTEST", "target/release/coedit-loadtest")","run","--url",f"ws://{host}:{port}/ws","--clients","2","--docs","1","--hot","--rate","10","--presence-rate","0","--ramp","1","--duration","15","--json",d+"/r.json"],capture_output=True,text=True)
    r = json.load(open(d+"/r.json"))
    print(LABEL, tag, "ack p50/p99 ms", r["ack_ms"]["p50"], r["ack_ms"]["p99"], "max", r["ack_ms"]["max"], "acked", r["ops_acked"], "rss MB", rss(), flush=True)
loadtest("no readers")
ts = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
for t in ts: t.start()
time.sleep(1)
peak = [0]
def watch():
    while not stop:
        peak[0] = max(peak[0], rss() or 0); time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
loadtest("4 readers")
stop = True
print(LABEL, "reader requests", pages[0], "peak rss MB", peak[0], flush=True)
p.terminate(); p.wait()
