#!/usr/bin/env python3
"""Traffic for the lab: the services nodes run, and the probes the client and attacker send.

  traffic.py serve                      HTTP on :80, TCP echo on :7, UDP echo on :7 (node services)
  traffic.py udp HOST PORT COUNT [--src ADDR] [--timeout S] [--until PATH]
                                        send COUNT datagrams (stopping early once PATH
                                        exists), count the echoes
  traffic.py tcp HOST PORT COUNT [--src ADDR]     COUNT connection attempts (one SYN each)
  traffic.py http HOST COUNT [--src ADDR]         COUNT HTTP GETs on :80
  traffic.py flood HOST SECONDS RATE [--src ADDR] HTTP GETs at RATE/s for SECONDS

Each probe prints one JSON object: {"kind", "host", "port", "sent", "answered"}.
A probe's timeout (--timeout, default 0.5 s) is short, so a TCP probe sends one SYN only
(no retransmission before the timeout) and "sent" counts packets the target's firewall
sees; probes expected to be answered use a longer one, so a loaded machine cannot make
them fail.
"""
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import time

TIMEOUT = 0.5


def serve():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{socket.gethostname()} ok\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(4096):
                self.request.sendall(data)

    class UdpEcho(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            sock.sendto(data, self.client_address)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    servers = [
        http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler),
        socketserver.ThreadingTCPServer(("0.0.0.0", 7), Echo),
        socketserver.ThreadingUDPServer(("0.0.0.0", 7), UdpEcho),
    ]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("serving http :80, tcp echo :7, udp echo :7", flush=True)
    threading.Event().wait()


def bound(kind, src):
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(TIMEOUT)
    if src:
        s.bind((src, 0))
    return s


def udp(host, port, count, src, until=None):
    answered, sent = 0, 0
    for i in range(count):
        if until and os.path.exists(until):
            break
        sent += 1
        s = bound(socket.SOCK_DGRAM, src)
        try:
            s.sendto(f"probe {i}".encode(), (host, port))
            s.recvfrom(4096)
            answered += 1
        except OSError:
            pass
        finally:
            s.close()
    return answered, sent


def tcp(host, port, count, src):
    answered = 0
    for _ in range(count):
        s = bound(socket.SOCK_STREAM, src)
        try:
            s.connect((host, port))
            answered += 1
        except OSError:
            pass
        finally:
            s.close()
    return answered


def get(host, src):
    s = bound(socket.SOCK_STREAM, src)
    try:
        s.connect((host, 80))
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        return reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def main(argv):
    global TIMEOUT
    if "--timeout" in argv:
        i = argv.index("--timeout")
        TIMEOUT = float(argv[i + 1])
        del argv[i : i + 2]
    until = None
    if "--until" in argv:
        i = argv.index("--until")
        until = argv[i + 1]
        del argv[i : i + 2]
    src = None
    if "--src" in argv:
        i = argv.index("--src")
        src = argv[i + 1]
        del argv[i : i + 2]
    cmd, *rest = argv
    if cmd == "serve":
        serve()
        return
    if cmd == "udp":
        host, port, count = rest[0], int(rest[1]), int(rest[2])
        answered, count = udp(host, port, count, src, until)
    elif cmd == "tcp":
        host, port, count = rest[0], int(rest[1]), int(rest[2])
        answered = tcp(host, port, count, src)
    elif cmd == "http":
        host, port, count = rest[0], 80, int(rest[1])
        answered = sum(get(host, src) for _ in range(count))
    elif cmd == "flood":
        # Each GET in its own thread: a dropped one (waiting out its timeout) does not
        # slow the others, so the rate holds whatever the node drops.
        import threading

        host, port, seconds, rate = rest[0], 80, float(rest[1]), float(rest[2])
        results, lock, threads = [], threading.Lock(), []

        def one():
            ok = get(host, src)
            with lock:
                results.append(ok)

        count, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            t = threading.Thread(target=one)
            t.start()
            threads.append(t)
            count += 1
            time.sleep(max(0.0, start + count / rate - time.monotonic()))
        for t in threads:
            t.join()
        answered = sum(results)
    else:
        sys.exit(f"unknown command {cmd!r}; see {sys.argv[0]} --help")
    if cmd not in ("flood", "udp"):
        count = int(rest[-1])
    print(json.dumps({"kind": cmd, "host": host, "port": port, "sent": count, "answered": answered}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    main(sys.argv[1:])
