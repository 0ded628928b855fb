"""Helpers of bench/sessions.sh (standard library only).

  sessions.py latency URL TOKEN N [STATUS]     p50/p95 ms of N GETs (keep-alive) answered STATUS (200)
  sessions.py ttfb URL TOKEN N                 CSV GETs: median and worst ms to the first byte and
                                               to the first record
  sessions.py pseudonym KEY VALUE              the service's pseudonym of VALUE
  sessions.py requests OUT_DIR N BATCH         N accounting requests, Start : Interim : Stop
                                               = 1 : 4 : 1, as JSON batches (OUT_DIR/batch-*.json)
                                               and as FreeRADIUS queries.conf SQL (OUT_DIR/freeradius.sql)
  sessions.py post URL TOKEN OUT_DIR [CLIENTS] posts every batch over CLIENTS connections, prints requests/s
"""

import glob
import hashlib
import hmac
import http.client
import json
import os
import sys
import time
import urllib.parse

T0 = 1_798_761_600  # 2027-01-01T00:00:00Z: after any demo or seeded data


def latency(url, token, n, expect=200):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    path = u.path + ("?" + u.query if u.query else "")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != expect:
            sys.exit(f"GET {path}: {response.status} {body[:200]!r}")
    times.sort()
    print(f"{times[len(times) // 2]:.2f} {times[int(len(times) * 0.95)]:.2f} {len(body)}")


def ttfb(url, token, n):
    """Median and worst milliseconds of `n` CSV GETs, each on a new
    connection, to the first byte of the body and to the first record (the
    line after the header), then closed (the service cancels its query)."""
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    first_byte, first_record = [], []
    for _ in range(n):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status}")
        body = b""
        while body.count(b"\n") < 2:
            chunk = response.read1(65536)
            if not chunk:
                sys.exit(f"GET {path}: fewer than one record")
            if not body:
                first_byte.append((time.perf_counter() - start) * 1000)
            body += chunk
        first_record.append((time.perf_counter() - start) * 1000)
        conn.close()
    first_byte.sort()
    first_record.sort()
    print(
        f"{first_byte[len(first_byte) // 2]:.1f} {first_byte[-1]:.1f} "
        f"{first_record[len(first_record) // 2]:.1f} {first_record[-1]:.1f}"
    )


def pseudonym(key, value):
    print(hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest())


def sql_text(v):
    return "'" + str(v).replace("'", "''") + "'"


def requests(out, n, batch):
    """Sessions of 6 requests each (Start, 4 Interim-Updates, Stop), the
    sessions interleaved as a NAS would send them."""
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "batch-*.json")):
        os.remove(old)
    sessions = n // 6
    all_requests = []
    # Ten sessions in flight at a time, each step one request.
    for block in range(0, sessions, 10):
        ids = range(block, min(block + 10, sessions))
        for step in range(6):
            for s in ids:
                t = T0 + s * 5 + step * 300
                status = "Start" if step == 0 else "Stop" if step == 5 else "Interim-Update"
                r = {
                    "Acct-Status-Type": status,
                    "Acct-Session-Id": f"B{s:08d}",
                    "User-Name": f"user{s % 50000}@example.com",
                    "NAS-IP-Address": f"10.1.{s % 8}.1",
                    "NAS-Port": s % 48,
                    "NAS-Port-Type": "Wireless-802.11",
                    "Calling-Station-Id": "02-00-%02X-%02X-%02X-%02X" % (s >> 24 & 255, s >> 16 & 255, s >> 8 & 255, s & 255),
                    "Called-Station-Id": "00-11-74-00-00-01:Corp",
                    "Framed-IP-Address": f"10.100.{s // 250 % 250}.{s % 250 + 1}",
                    "Event-Timestamp": t,
                }
                if step > 0:
                    r["Acct-Session-Time"] = step * 300
                    r["Acct-Input-Octets"] = step * 123456
                    r["Acct-Output-Octets"] = step * 654321
                if step == 5:
                    r["Acct-Terminate-Cause"] = "User-Request"
                all_requests.append(r)
    for i in range(0, len(all_requests), batch):
        with open(os.path.join(out, f"batch-{i // batch:06d}.json"), "w") as f:
            json.dump(all_requests[i:i + batch], f)
    # The same requests as rlm_sql runs them (FreeRADIUS 3.2 queries.conf,
    # one statement per request; the unique id as acct_unique computes it).
    # Also split in two by blocks of ten sessions, for two sessions at once.
    halves = [open(os.path.join(out, f"freeradius-{i}.sql"), "w") for i in range(2)]
    for half in halves:
        half.write("\\set ON_ERROR_STOP 1\n")
    with open(os.path.join(out, "freeradius.sql"), "w") as whole:
        whole.write("\\set ON_ERROR_STOP 1\n")
        for index, r in enumerate(all_requests):
            session = int(r["Acct-Session-Id"][1:])

            class Both:
                @staticmethod
                def write(text):
                    whole.write(text)
                    halves[session // 10 % 2].write(text)

            f = Both
            uid = hashlib.md5(f"{r['User-Name']},{r['Acct-Session-Id']},{r['NAS-IP-Address']},,,{r['NAS-Port']}".encode()).hexdigest()
            t = r["Event-Timestamp"]
            common = (sql_text(r["Acct-Session-Id"]), sql_text(uid), sql_text(r["User-Name"]), sql_text(r["NAS-IP-Address"]),
                      sql_text(r["NAS-Port"]), sql_text(r["Calling-Station-Id"]), sql_text(r["Called-Station-Id"]), sql_text(r["Framed-IP-Address"]))
            sid, uq, user, nas, port, calling, called, framed = common
            if r["Acct-Status-Type"] == "Start":
                f.write(
                    "INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, Realm, NASIPAddress, NASPortId, NASPortType, "
                    "AcctStartTime, AcctUpdateTime, AcctStopTime, AcctSessionTime, AcctAuthentic, ConnectInfo_start, ConnectInfo_Stop, "
                    "AcctInputOctets, AcctOutputOctets, CalledStationId, CallingStationId, AcctTerminateCause, ServiceType, FramedProtocol, "
                    f"FramedIpAddress) VALUES({sid}, {uq}, {user}, NULL, {nas}, {port}, 'Wireless-802.11', TO_TIMESTAMP({t}), "
                    f"TO_TIMESTAMP({t}), NULL, 0, '', '', NULL, 0, 0, {called}, {calling}, NULL, '', '', {framed}::inet) "
                    f"ON CONFLICT (AcctUniqueId) DO UPDATE SET AcctStartTime = TO_TIMESTAMP({t}), AcctUpdateTime = TO_TIMESTAMP({t}) "
                    f"WHERE radacct.AcctUniqueId = {uq} AND radacct.AcctStopTime IS NULL;\n")
            elif r["Acct-Status-Type"] == "Interim-Update":
                f.write(
                    f"UPDATE radacct SET FramedIPAddress = {framed}::inet, AcctSessionTime = {r['Acct-Session-Time']}, "
                    f"AcctInterval = ({t} - EXTRACT(EPOCH FROM (COALESCE(AcctUpdateTime, AcctStartTime)))), "
                    f"AcctUpdateTime = TO_TIMESTAMP({t}), AcctInputOctets = {r['Acct-Input-Octets']}, "
                    f"AcctOutputOctets = {r['Acct-Output-Octets']} WHERE AcctUniqueId = {uq} AND AcctStopTime IS NULL;\n")
            else:
                f.write(
                    f"UPDATE radacct SET AcctStopTime = TO_TIMESTAMP({t}), AcctUpdateTime = TO_TIMESTAMP({t}), "
                    f"AcctSessionTime = {r['Acct-Session-Time']}, AcctInputOctets = {r['Acct-Input-Octets']}, "
                    f"AcctOutputOctets = {r['Acct-Output-Octets']}, AcctTerminateCause = 'User-Request', "
                    f"FramedIPAddress = {framed}::inet, ConnectInfo_stop = '' WHERE AcctUniqueId = {uq} AND AcctStopTime IS NULL;\n")
    for half in halves:
        half.close()
    print(len(all_requests))


def post(url, token, out, clients=1):
    """Posts every batch, `clients` connections at once (each its share of
    the batches, in order); prints requests/s."""
    import threading
    u = urllib.parse.urlsplit(url)
    bodies = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(out, "batch-*.json")))]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    count = sum(len(json.loads(b)) for b in bodies)
    failures = []

    def run(share):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        for body in share:
            conn.request("POST", u.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                failures.append(f"POST: {response.status} {answer[:300]!r}")
                return

    shares = [bodies[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        sys.exit(failures[0])
    print(f"{count / elapsed:.0f}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "latency":
        latency(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 200)
    elif command == "ttfb":
        ttfb(args[0], args[1], int(args[2]))
    elif command == "pseudonym":
        pseudonym(args[0], args[1])
    elif command == "requests":
        requests(args[0], int(args[1]), int(args[2]))
    elif command == "post":
        post(args[0], args[1], args[2], int(args[3]) if len(args) > 3 else 1)
    else:
        sys.exit(__doc__)
