"""Helpers of bench/changes.sh (standard library only); the throughput of the
feed and of windows is read by bench/client.rs.

  changes.py latency URL TOKEN N STATUS [IF_NONE_MATCH]
                                            p50/p95 ms of N keep-alive GETs answered STATUS
  changes.py etag URL TOKEN                 the window's ETag
  changes.py sse URL TOKEN PSQL_URL N       N inserts one by one (psql, 100 ms apart) while an
                                            event stream is open: p50/p99/max ms commit -> event
"""

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse


def connect(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120), u


def path_of(u):
    return u.path + ("?" + u.query if u.query else "")


def latency(url, token, n, status, tag=None):
    conn, u = connect(url)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if tag:
        headers["If-None-Match"] = tag
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path_of(u), headers=headers)
        response = conn.getresponse()
        body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != status:
            sys.exit(f"GET {url}: {response.status} {body[:200]!r}")
    times.sort()
    print(f"{times[len(times) // 2]:.2f} {times[int(len(times) * 0.95)]:.2f}")


def etag(url, token):
    conn, u = connect(url)
    conn.request("GET", path_of(u), headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    response = conn.getresponse()
    response.read()
    print(response.getheader("ETag"))


def sse(url, token, psql_url, n):
    """Opens the event stream, then inserts N events one at a time through
    one psql session (each its own transaction), 100 ms apart; measures
    from just before each INSERT is sent to its event's arrival."""
    conn, u = connect(url)
    conn.request("GET", path_of(u), headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
    response = conn.getresponse()
    if response.status != 200:
        sys.exit(f"GET {url}: {response.status}")
    sent, arrived = {}, {}
    done = threading.Event()

    def read():
        buffer = b""
        while not done.is_set():
            chunk = response.read1(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        record = json.loads(line[6:])
                        name = record.get("authMethodName", "")
                        if name.startswith("sse-"):
                            arrived[name] = time.perf_counter()
                if len(arrived) >= n:
                    done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    psql = subprocess.Popen(["psql", "-q", psql_url], stdin=subprocess.PIPE, text=True)
    for i in range(n):
        name = f"sse-{i}"
        sent[name] = time.perf_counter()
        psql.stdin.write(
            "INSERT INTO auth_event (occurred_at, auth_method_type, auth_method_name, "
            f"auth_request_origin, user_id) VALUES (now(), 'PASSWORD', '{name}', 'CN=bench', 'sse@example.com');\n"
        )
        psql.stdin.flush()
        time.sleep(0.1)
    psql.stdin.close()
    psql.wait()
    done.wait(30)
    delays = sorted((arrived[k] - sent[k]) * 1000 for k in sent if k in arrived)
    if len(delays) < n:
        sys.exit(f"only {len(delays)} of {n} events arrived")
    print(f"{delays[len(delays) // 2]:.0f} {delays[int(len(delays) * 0.99)]:.0f} {delays[-1]:.0f}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "latency":
        latency(args[0], args[1], int(args[2]), int(args[3]), args[4] if len(args) > 4 else None)
    elif command == "etag":
        etag(args[0], args[1])
    elif command == "sse":
        sse(args[0], args[1], args[2], int(args[3]))
    else:
        sys.exit(__doc__)
