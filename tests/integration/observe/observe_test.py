#!/usr/bin/env python3
"""Observability end to end through the real `ferry` binary: two `ferry serve` emulators on 127.0.0.1
(port 0), a seeded source, then `ferry migrate --metrics-addr 127.0.0.1:0` scraped while it runs and at
its end, the TTY status area under a pseudo-terminal, and `ferry status --watch`.

Usage: observe_test.py <path to ferry> <case>. Each case is bounded (small org, timeouts) and stops
every process it started. Exit 0 = pass; a failure prints "FAIL: ..." and exits 1.
"""
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request

FERRY, CASE = os.path.abspath(sys.argv[1]), sys.argv[2]
SRC_KEY, DST_KEY = "observe-source-key-0123456789", "observe-dest-key-9876543210"
WORK = tempfile.mkdtemp(prefix="ferry-observe-")
PROCS = []


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(WORK, ignore_errors=True)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("BT_") or k.startswith("MIGRATION_") or k in ("LOG_LEVEL", "LOG_FORMAT"))}
    env.update(extra)
    return env


def start_emulator(name, key, org, *flags):
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen([FERRY, "--log-level", "warn", "serve", "--port", "0", *flags],
                         stdout=log, stderr=subprocess.STDOUT, cwd=WORK,
                         env=clean_env(FERRY_SERVE_API_KEYS=key + ":" + org))
    PROCS.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:
        m = re.search(r"http://127\.0\.0\.1:\d+", open(os.path.join(WORK, name + ".log")).read())
        if m:
            return m.group(0)
        time.sleep(0.05)
    fail(name + " emulator did not start")


def setup(events=1500, dest_flags=()):
    src = start_emulator("source", SRC_KEY, "obs-source")
    dst = start_emulator("dest", DST_KEY, "obs-dest", *dest_flags)
    r = subprocess.run([FERRY, "seed", "--url", src, "--projects", "2", "--events", str(events), "--experiments", "1",
                        "--experiment-events", "50", "--datasets", "1", "--dataset-events", "40", "--seed", "5"],
                       cwd=WORK, env=clean_env(BT_SOURCE_API_KEY=SRC_KEY), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("seed: " + r.stdout + r.stderr)
    with open(os.path.join(WORK, ".env"), "w") as f:
        f.write(f"BT_SOURCE_URL={src}\nBT_SOURCE_API_KEY={SRC_KEY}\nBT_DEST_URL={dst}\nBT_DEST_API_KEY={DST_KEY}\n"
                f"MIGRATION_STATE_DIR={WORK}/state\nMIGRATION_RETRY_DELAY=20ms\n"
                # The injected 429s must never exhaust a batch's retries (0.15^13: never in practice).
                f"MIGRATION_RETRY_ATTEMPTS=12\n")
    return src, dst


# --- Prometheus text format 0.0.4 ------------------------------------------------------------------
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?\}})? (\S+)$")


def parse_exposition(text):
    """{(name, frozenset(labels)): value}; fails on anything the format does not allow."""
    helps, types, samples = set(), {}, {}
    if not text.endswith("\n"):
        fail("exposition does not end with a newline")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            if name in helps:
                fail("HELP twice for " + name)
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if typ not in ("counter", "gauge"):
                fail("bad TYPE line: " + line)
            if name not in helps or name in types:
                fail("TYPE without HELP first, or twice: " + line)
            types[name] = typ
        else:
            m = SAMPLE.match(line)
            if not m:
                fail("not a sample line: " + repr(line))
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if name not in types:
                fail("sample before its TYPE line: " + line)
            pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
            samples[(name, pairs)] = float(value)
    return types, samples


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        ctype = r.headers.get("Content-Type")
        if ctype != "text/plain; version=0.0.4; charset=utf-8":
            fail("content type " + str(ctype))
        return r.read().decode()


def values(samples, name, **labels):
    return [v for (n, ls), v in samples.items() if n == name and all((k, lv) in ls for k, lv in labels.items())]


def wait_for(path, pattern, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, open(path).read())
        if m:
            return m
        if proc.poll() is not None:
            fail(f"ferry exited {proc.returncode} before /{pattern}/: " + open(path).read()[-2000:])
        time.sleep(0.05)
    fail(f"no /{pattern}/ within {timeout}s: " + open(path).read()[-2000:])


def status_rows():
    r = subprocess.run([FERRY, "status", "--json"], cwd=WORK, env=clean_env(), capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        fail("status: " + r.stderr)
    return sum(int(x) for x in re.findall(r'"rows":(\d+)', r.stdout)), r.stdout


def case_metrics_scrape():
    # 429s on some /logs3 answers: throttles and stream retries show up too.
    setup(4000, dest_flags=("--fault", "path=/logs3,kind=status,status=429,rate=0.15,retry_after=0"))
    err_path = os.path.join(WORK, "migrate.err")
    mig = subprocess.Popen([FERRY, "migrate", "--metrics-addr", "127.0.0.1:0", "--metrics-linger", "60s",
                            "--max-requests-per-second", "40", "--logs-insert-batch-size", "100"],
                           cwd=WORK, env=clean_env(MIGRATION_METRICS_SHARD="2"), stdout=subprocess.DEVNULL,
                           stderr=open(err_path, "w"))
    PROCS.append(mig)
    port = int(wait_for(err_path, r"metrics url=http://127\.0\.0\.1:(\d+)/metrics", mig).group(1))
    # While it runs: rows climb, the streams are counted.
    during, rows_during = None, []
    deadline = time.time() + 90
    while time.time() < deadline and "metrics linger" not in open(err_path).read():
        _, s = parse_exposition(scrape(port))
        rows_during.append(sum(values(s, "ferry_rows_copied_total")))
        if values(s, "ferry_streams_running") and values(s, "ferry_streams_running")[0] >= 1:
            during = s
        time.sleep(0.2)
    if during is None:
        fail("never scraped while a stream was running")
    if rows_during != sorted(rows_during):
        fail(f"the rows counter went down between scrapes: {rows_during}")
    wait_for(err_path, r"metrics linger", mig, timeout=120)
    text = scrape(port)
    types, s = parse_exposition(text)
    if os.environ.get("OBSERVE_DUMP"):
        print(text)
    copied, status_json = status_rows()
    total = sum(values(s, "ferry_rows_copied_total"))
    if copied == 0 or total != copied:
        fail(f"ferry_rows_copied_total sums to {total}, the state says {copied} rows copied: {status_json}")
    if len(values(s, "ferry_rows_copied_total")) < 4:
        fail("expected one rows series per stream:\n" + text)
    if sum(values(s, "ferry_bytes_copied_total")) <= total:
        fail("bytes copied implausibly small")
    for name, typ in {"ferry_rows_copied_total": "counter", "ferry_http_requests_total": "counter",
                      "ferry_http_retries_total": "counter", "ferry_http_throttles_total": "counter",
                      "ferry_stream_retries_total": "counter", "ferry_page_size_rows": "gauge",
                      "ferry_write_concurrency": "gauge", "ferry_lag_rows": "gauge", "ferry_lag_seconds": "gauge",
                      "ferry_slices": "gauge", "ferry_streams_running": "gauge",
                      "ferry_http_concurrency_limit": "gauge", "ferry_http_requests_in_flight": "gauge",
                      "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter"}.items():
        if types.get(name) != typ:
            fail(f"{name} should be a {typ}:\n{text}")
    if not values(s, "ferry_http_requests_total", side="source", endpoint="/btql", status="200", method="POST"):
        fail("no source /btql 200 requests counted:\n" + text)
    logs3_ok = sum(values(s, "ferry_http_requests_total", side="destination", endpoint="/logs3", status="200"))
    if logs3_ok < total / 100:
        fail(f"{logs3_ok} destination /logs3 200s for {total} rows in batches of 100")
    if sum(values(s, "ferry_http_throttles_total", side="destination", endpoint="/logs3", status="429")) < 1:
        fail("the injected 429s were not counted as throttles:\n" + text)
    if sum(values(s, "ferry_http_requests_total", side="destination", endpoint="/logs3", status="429")) < 1:
        fail("the injected 429s were not counted as requests")
    if sum(values(s, "ferry_stream_retries_total")) < 1:
        fail("no stream retries after 429s")
    if any(v != 0 for v in values(s, "ferry_lag_rows")):
        fail("a stream still lags at the end:\n" + text)
    if values(s, "ferry_http_concurrency_limit", side="destination") != [40]:
        fail("the destination's request semaphore is not the default 40:\n" + text)
    if values(s, "ferry_streams_running") != [0]:
        fail("streams still running at the end")
    if not all(1 <= v <= 1000 for v in values(s, "ferry_page_size_rows")) or not values(s, "ferry_page_size_rows"):
        fail("implausible page sizes")
    if not values(s, "ferry_write_concurrency") or min(values(s, "ferry_write_concurrency")) < 1:
        fail("implausible write concurrency")
    if values(s, "process_resident_memory_bytes")[0] < 1e6 or values(s, "process_cpu_seconds_total")[0] <= 0:
        fail("implausible process metrics")
    if not all(("shard", "2") in ls for (_, ls) in s):
        fail("a series without shard=\"2\"")
    for secret in (SRC_KEY, DST_KEY, "http://", "Bearer"):
        if secret in text:
            fail(f"{secret!r} in the metrics")
    if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", " ".join(re.findall(r'endpoint="[^"]*"', text))):
        fail("an id in an endpoint label")
    # SIGINT ends the linger at once; the run's exit code stands.
    mig.send_signal(signal.SIGINT)
    try:
        rc = mig.wait(timeout=20)
    except subprocess.TimeoutExpired:
        fail("SIGINT did not end the linger")
    if rc != 0:
        fail(f"migrate exit {rc}: " + open(err_path).read()[-2000:])
    if "\x1b[" in open(err_path).read():
        fail("a status area drawn on a stderr that is not a TTY")


# --- pseudo-terminal -----------------------------------------------------------------------------------
class Terminal:
    """Printable bytes, CR, LF (scrolling), CSI n A, CSI J, CSI K; other CSI sequences are ignored."""

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols
        self.screen = [""] * rows
        self.scrolled = []
        self.r = self.c = 0

    def put(self, ch):
        line = self.screen[self.r]
        if self.c >= self.cols:  # auto-wrap, as a terminal does
            self.newline()
            line = self.screen[self.r]
        line = line.ljust(self.c)
        self.screen[self.r] = line[:self.c] + ch + line[self.c + 1:]
        self.c += 1

    def newline(self):
        self.c = 0
        if self.r + 1 < self.rows:
            self.r += 1
        else:
            self.scrolled.append(self.screen.pop(0))
            self.screen.append("")

    def feed(self, text):
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\r":
                self.c = 0
            elif ch == "\n":
                self.newline()
            elif ch == "\x1b" and i + 1 < len(text) and text[i + 1] == "[":
                m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", text[i:])
                if not m:
                    return text[i:]  # incomplete sequence: wait for more bytes
                n = int(m.group(1)) if m.group(1).isdigit() else 1
                op = m.group(2)
                if op == "A":
                    self.r = max(0, self.r - n)
                elif op == "K":
                    self.screen[self.r] = self.screen[self.r][:self.c]
                elif op == "J":
                    self.screen[self.r] = self.screen[self.r][:self.c]
                    for k in range(self.r + 1, self.rows):
                        self.screen[k] = ""
                i += len(m.group(0))
                continue
            elif ch >= " ":
                self.put(ch)
            i += 1
        return ""


LOG_ROW = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|warn|error|critical) \[")


def check_rows(term, where):
    for row in term.scrolled[-term.rows * 2:] + term.screen:
        logs = [m.start() for m in LOG_ROW.finditer(row)]
        status = "ferry migrate:" in row or "rows/s" in row
        if (logs and (status or logs[0] != 0)) or len(logs) > 1 or ("ferry migrate:" in row and not row.startswith("ferry migrate:")):
            fail(f"a log line and a status line share a row ({where}): {row!r}")


def run_in_pty(argv, rows, cols, on_output=None, timeout=120, env=None):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(WORK)
        os.execve(argv[0], argv, env or clean_env())
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if on_output:
                on_output(chunk, pid)
    else:
        os.kill(pid, signal.SIGKILL)
        fail("process under the pty did not end in time")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def case_tty_status_area():
    # Logs at debug (a retry line per injected 429) while the status area is redrawn every second: many
    # log lines land during its life.
    setup(3000, dest_flags=("--fault", "path=/logs3,kind=status,status=429,rate=0.15,retry_after=0"))
    term = Terminal(30, 150)
    pending = [""]
    draws = [0]

    def on_output(chunk, _pid):
        text = pending[0] + chunk.decode("utf-8", "replace")
        draws[0] += text.count("ferry migrate: ")
        pending[0] = term.feed(text)
        check_rows(term, "while running")

    rc, out = run_in_pty([FERRY, "--log-level", "debug", "migrate", "--max-requests-per-second", "25",
                          "--logs-insert-batch-size", "50"], 30, 150, on_output)
    text = out.decode("utf-8", "replace")
    if rc != 0:
        fail(f"migrate under a pty exit {rc}: {text[-3000:]}")
    if draws[0] < 3:
        fail(f"the status area was drawn {draws[0]} time(s), want several: {text[-3000:]}")
    if os.environ.get("OBSERVE_DUMP"):
        print(repr(text))
    if len(LOG_ROW.findall(text)) < 20 or "retry" not in text:
        fail("too few log lines to tell anything")
    if not re.search(r"\n  logs:[^\n]*rows/s", text):
        fail("no per-stream line in the status area")
    check_rows(term, "at the end")
    if any("ferry migrate:" in row for row in term.screen):
        fail("the status area was left on the screen at the end: " + "\n".join(term.screen))


def case_status_watch():
    setup(3000)
    err_path = os.path.join(WORK, "migrate.err")
    mig = subprocess.Popen([FERRY, "migrate", "--max-requests-per-second", "8"], cwd=WORK, env=clean_env(),
                           stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    PROCS.append(mig)
    wait_for(err_path, r"stream start", mig)
    # Not a TTY: periodic lines, a header each time; SIGINT (once three views came) ends it with exit 0.
    w = subprocess.Popen([FERRY, "status", "--watch", "--interval", "0.2"], cwd=WORK, env=clean_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(w)
    seen, first, pending = 0, [], False
    deadline = time.time() + 60
    while (seen < 3 or not pending) and time.time() < deadline:
        line = w.stdout.readline()
        if not line:
            break
        first.append(line)
        seen += line.startswith("ferry status:")
        pending = pending or re.match(r"logs:\S+ pending rows=[1-9]", line) is not None
    w.send_signal(signal.SIGINT)
    try:
        rest, err = w.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        fail("status --watch did not stop on SIGINT")
    out = "".join(first) + rest
    if w.returncode != 0:
        fail(f"status --watch exit {w.returncode}: {err}")
    headers = re.findall(r"^ferry status: (\d+) stream\(s\), (\d+) done, (\d+) rows", out, re.M)
    if len(headers) < 3:
        fail("want a header every interval: " + out)
    if [int(h[2]) for h in headers] != sorted(int(h[2]) for h in headers):
        fail("rows went down between reads: " + out)
    if not re.search(r"^logs:\S+ pending rows=\d+ rows_per_s=", out, re.M):
        fail("no pending stream line: " + out)
    if "\x1b[" in out:
        fail("escape sequences without a TTY")
    # A TTY: redrawn in place (the area's erase sequence), ends on SIGINT.
    stopped, seen_tty = [False], [""]

    def on_output(chunk, pid):  # SIGINT once the view was redrawn twice
        seen_tty[0] += chunk.decode("utf-8", "replace")
        if not stopped[0] and len(re.findall(r"\r\x1b\[\d+A\x1b\[J", seen_tty[0])) >= 2:
            os.kill(pid, signal.SIGINT)
            stopped[0] = True

    rc, raw = run_in_pty([FERRY, "status", "--watch", "--interval", "0.2"], 24, 120, on_output, timeout=60)
    text = raw.decode("utf-8", "replace")
    if rc != 0:
        fail(f"status --watch under a pty exit {rc}: {text}")
    if not re.search(r"\r\x1b\[\d+A\x1b\[J", text):
        fail("no in-place redraw on a TTY: " + repr(text[:500]))
    term = Terminal(24, 120)
    term.feed(text)
    if sum(1 for row in term.screen if row.startswith("ferry status:")) != 1:
        fail("the view was not redrawn in place: " + "\n".join(term.screen))
    mig.send_signal(signal.SIGINT)
    mig.wait(timeout=60)


def case_metrics_follow_lag():
    # --follow measures each stream's lag in seconds at the end of a round; ferry_lag_seconds carries it
    # (before: the gauge stayed NaN, "not measured", whatever the rounds measured).
    setup(300)
    err_path = os.path.join(WORK, "follow.err")
    mig = subprocess.Popen([FERRY, "migrate", "--follow", "--until-caught-up", "--follow-interval", "200ms",
                            "--metrics-addr", "127.0.0.1:0", "--metrics-linger", "60s"],
                           cwd=WORK, env=clean_env(), stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    PROCS.append(mig)
    port = int(wait_for(err_path, r"metrics url=http://127\.0\.0\.1:(\d+)/metrics", mig).group(1))
    wait_for(err_path, r"metrics linger", mig, timeout=120)
    text = scrape(port)
    _, s = parse_exposition(text)
    lags = values(s, "ferry_lag_seconds")
    if len(lags) < 4 or any(v != 0 for v in lags):
        fail("after the cut-over round every stream's ferry_lag_seconds should be 0 (measured):\n" + text)
    mig.send_signal(signal.SIGINT)
    if mig.wait(timeout=20) != 0:
        fail("migrate --follow --until-caught-up failed: " + open(err_path).read()[-2000:])


try:
    {"metrics_scrape": case_metrics_scrape, "metrics_follow_lag": case_metrics_follow_lag, "tty_status_area": case_tty_status_area,
     "status_watch": case_status_watch}[CASE]()
    print("ok " + CASE)
finally:
    cleanup()
