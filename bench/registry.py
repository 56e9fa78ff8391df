#!/usr/bin/env python3
"""cascade's registry against Debian's docker-registry (Distribution 2.8), side by side.

Starts `cascade serve` and `docker-registry serve` on free loopback ports, each with its
own temporary state, and measures for each, with the same data and the same clients:

  * push of a 256 MiB random blob: monolithic (POST, then one PUT of the body; curl) and
    chunked (POST, PATCHes of 16 MiB with Content-Range, closing PUT; http.client on one
    keep-alive connection),
  * pull of that blob (curl -o /dev/null; the digest is checked once on a pull to a file),
  * manifest GETs per second under wrk (by tag and by digest, OCI Accept header),
  * skopeo copy of an 8-layer OCI image in (oci: -> docker://) and out (docker:// -> oci:),
  * resident memory (VmRSS, VmHWM from /proc/PID/status): at rest after start, peak under
    load (sampled every 50 ms during the blob and wrk phases), and VmHWM at the end.

Every timed measurement runs --repeat times (3) and the median is reported. Each
repetition pushes fresh random data, so no registry can answer "already exists".

Prints a markdown table `metric | cascade | distribution | ratio`, the ratio oriented so
that > 1 means cascade is better, and writes it (with the raw samples) to --output.

Python standard library only; curl, wrk, skopeo and docker-registry are run as programs.
Traffic goes to 127.0.0.1 only. Usage: see bench/README.md.
"""

import argparse
import hashlib
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import gzip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log("error: " + msg)
    sys.exit(1)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def random_file(path, size):
    """size bytes of fresh random data; returns the digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 4 * MiB))
            h.update(b)
            f.write(b)
            left -= len(b)
    return "sha256:" + h.hexdigest()


def run(cmd, timeout=900, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        die(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def memory(pid):
    """{'VmRSS', 'VmHWM', 'RssAnon', 'RssFile': kB} of a process (all its threads).
    RssFile counts mapped file pages (page cache, e.g. an mmap'ed blob): shared and
    reclaimable, unlike RssAnon (heap, stacks)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class Sampler:
    """While in a `with` block: samples VmRSS and RssAnon of a pid every 50 ms (.peak_kb,
    .peak_anon_kb) and counts the CPU time it uses (.cpu, seconds). The CPU time is
    what the server itself spent, so it is far less disturbed by a busy machine than
    wall-clock throughput."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kb = 0
        self.peak_anon_kb = 0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self):
        m = memory(self.pid)
        self.peak_kb = max(self.peak_kb, m.get("VmRSS", 0))
        self.peak_anon_kb = max(self.peak_anon_kb, m.get("RssAnon", 0))

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.05)

    def __enter__(self):
        self._cpu0 = cpu_seconds(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        self.cpu = cpu_seconds(self.pid) - self._cpu0


# ---- the registries ---------------------------------------------------------------------


class Registry:
    def __init__(self, name, cmd, port, log_path, env=None):
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"{name} exited {self.proc.returncode} at start; its log:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(self.base + "/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        die(f"{name} did not answer {self.base}/v2/ within 60 s; its log:\n{self.read_log()}")

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_cascade(binary, tmp):
    root = os.path.join(tmp, "cascade-root")
    os.makedirs(root)
    port = free_port()
    return Registry("cascade", [binary, "serve", "--root", root, "--listen",
                                f"127.0.0.1:{port}"], port, os.path.join(tmp, "cascade.log"))


def start_distribution(binary, tmp):
    storage = os.path.join(tmp, "distribution-storage")
    os.makedirs(storage)
    port = free_port()
    config = os.path.join(tmp, "distribution.yml")
    # Debian's /etc/docker/registry/config.yml without auth and the storage health
    # check, on a temporary directory and a loopback port, logging errors only.
    with open(config, "w") as f:
        f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    return Registry("distribution", [binary, "serve", config], port,
                    os.path.join(tmp, "distribution.log"))


# ---- HTTP helpers --------------------------------------------------------------------------


def absolute(reg, location):
    return urllib.parse.urljoin(reg.base + "/", location)


def with_query(url, **params):
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


def curl_timed(args):
    """Runs curl -sS with the args; returns (seconds, http_code, headers text)."""
    p = run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-w", "\n%{time_total} %{http_code}"]
            + args)
    head, _, tail = p.stdout.rpartition("\n")
    seconds, code = tail.split()
    return float(seconds), int(code), head


def header(headers_text, name):
    for line in headers_text.splitlines():
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def start_upload(reg, repo):
    seconds, code, head = curl_timed(
        ["-X", "POST", "-H", "Content-Length: 0", f"{reg.base}/v2/{repo}/blobs/uploads/"])
    loc = header(head, "Location")
    if code != 202 or not loc:
        die(f"{reg.name}: POST upload in {repo} answered {code}, Location {loc}:\n{head}")
    return seconds, absolute(reg, loc)


def push_monolithic(reg, repo, path, digest):
    """POST, then PUT ?digest= with the whole body (curl -T streams the file)."""
    t_post, loc = start_upload(reg, repo)
    t_put, code, head = curl_timed([
        "-X", "PUT", "-T", path, "-H", "Content-Type: application/octet-stream",
        with_query(loc, digest=digest)])
    if code != 201:
        die(f"{reg.name}: monolithic PUT answered {code}:\n{head}")
    return t_post + t_put


def push_chunked(reg, repo, path, digest, chunk):
    """POST, PATCH chunk by chunk (Content-Range), PUT ?digest= with no body, all on one
    keep-alive connection, as docker and containerd push."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=300)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    loc = r.getheader("Location")
    if r.status != 202 or not loc:
        die(f"{reg.name}: POST upload answered {r.status}")
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            data = f.read(chunk)
            url = urllib.parse.urlsplit(absolute(reg, loc))
            target = url.path + ("?" + url.query if url.query else "")
            conn.request("PATCH", target, body=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
                "Content-Range": f"{offset}-{offset + len(data) - 1}"})
            r = conn.getresponse()
            r.read()
            if r.status != 202:
                die(f"{reg.name}: PATCH at {offset} answered {r.status}")
            loc = r.getheader("Location") or loc
            offset += len(data)
    url = urllib.parse.urlsplit(with_query(absolute(reg, loc), digest=digest))
    conn.request("PUT", url.path + "?" + url.query, headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        die(f"{reg.name}: closing PUT answered {r.status}")
    conn.close()
    return time.perf_counter() - start


def pull_timed(reg, repo, digest):
    seconds, code, head = curl_timed([f"{reg.base}/v2/{repo}/blobs/{digest}"])
    if code != 200:
        die(f"{reg.name}: GET blob answered {code}:\n{head}")
    return seconds


def verify_pull(reg, repo, digest, tmp):
    out = os.path.join(tmp, "pulled")
    run(["curl", "-sSf", "-o", out, f"{reg.base}/v2/{repo}/blobs/{digest}"])
    got = sha256_file(out)
    os.unlink(out)
    if got != digest:
        die(f"{reg.name}: pulled blob has digest {got}, pushed {digest}")


def put_blob_bytes(reg, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=60)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    r.read()
    if r.status == 202:  # no monolithic POST: PUT to the session
        url = urllib.parse.urlsplit(with_query(absolute(reg, r.getheader("Location")),
                                               digest=digest))
        conn.request("PUT", url.path + "?" + url.query, body=data,
                     headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        r.read()
    if r.status != 201:
        die(f"{reg.name}: small blob upload answered {r.status}")
    conn.close()
    return digest


def put_manifest(reg, repo, tag, manifest_bytes):
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=60)
    conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest_bytes,
                 headers={"Content-Type": OCI_MANIFEST})
    r = conn.getresponse()
    body = r.read()
    if r.status != 201:
        die(f"{reg.name}: PUT manifest answered {r.status}: {body[:500]!r}")
    conn.close()
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


# ---- an OCI image layout for skopeo ---------------------------------------------------------


def write_blob(layout, data):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd


def make_layout(layout, layers, layer_size):
    """An OCI image layout, tag "latest": `layers` gzip layers of one random file each."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for i in range(layers):
        payload = os.urandom(layer_size)
        tar_buf = io.BytesIO()
        with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/layer{i}.bin")
            info.size = len(payload)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(payload))
        tar_bytes = tar_buf.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        gz = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
        descs.append({"mediaType": OCI_LAYER_GZIP, "digest": write_blob(layout, gz),
                      "size": len(gz)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(layers)],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": write_blob(layout, config),
                   "size": len(config)},
        "layers": descs,
    }, sort_keys=True).encode()
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": write_blob(layout, manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


def skopeo_copy(src, dest):
    start = time.perf_counter()
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         "--dest-tls-verify=false", src, dest])
    return time.perf_counter() - start


# ---- wrk --------------------------------------------------------------------------------------


def wrk(url, accept, threads, conns, duration):
    p = run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
             "-H", f"Accept: {accept}", url], timeout=duration + 120)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    if not m:
        die(f"wrk printed no Requests/sec:\n{p.stdout}\n{p.stderr}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", p.stdout)
    errors = re.search(r"Socket errors:.*", p.stdout)
    if bad and int(bad.group(1)) > 0:
        die(f"wrk got {bad.group(1)} non-2xx answers from {url}:\n{p.stdout}")
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", p.stdout)
    p99_ms = None
    if p99:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
        p99_ms = float(p99.group(1)) * scale
    return float(m.group(1)), p99_ms, (errors.group(0) if errors else "")


# ---- the benchmark ---------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs)


def bench(args):
    for prog in ("curl", "wrk", "skopeo"):
        if not shutil.which(prog):
            die(f"{prog} is not installed (bash .ci/setup --no-build installs it)")
    if not os.access(args.cascade, os.X_OK):
        die(f"{args.cascade} is not an executable; build cascade first "
            "(cmake --build build --target cascade) or pass --cascade PATH")
    if not shutil.which(args.distribution):
        die(f"{args.distribution} not found (apt-get install docker-registry)")

    blob_size = args.blob_mib * MiB
    tmp = tempfile.mkdtemp(prefix="cascade-bench-")
    regs = []
    samples = {}  # (metric, registry) -> [values]
    notes = []

    def add(metric, reg, value):
        samples.setdefault((metric, reg.name), []).append(value)

    try:
        log(f"temporary directory {tmp}")
        regs = [start_cascade(args.cascade, tmp), start_distribution(args.distribution, tmp)]
        time.sleep(2)
        for reg in regs:
            m = memory(reg.pid)
            add("RSS at rest after start (MiB)", reg, m.get("VmRSS", 0) / 1024)
            log(f"{reg.name}: pid {reg.pid} on {reg.base}, VmRSS {m.get('VmRSS', 0)} kB")
        peaks = {reg.name: 0 for reg in regs}
        anon_peaks = {reg.name: 0 for reg in regs}

        def took(reg, s):
            peaks[reg.name] = max(peaks[reg.name], s.peak_kb)
            anon_peaks[reg.name] = max(anon_peaks[reg.name], s.peak_anon_kb)

        # -- blobs: push monolithic, push chunked, pull. Fresh random data per
        #    repetition, the same data for both registries.
        for rep in range(args.repeat):
            for mode in ("monolithic", "chunked"):
                path = os.path.join(tmp, f"blob-{mode}-{rep}")
                log(f"blob {rep + 1}/{args.repeat} ({mode}): {args.blob_mib} MiB of random data")
                digest = random_file(path, blob_size)
                # Alternate who goes first, so that drift in the machine's load evens out.
                for reg in regs if rep % 2 == 0 else regs[::-1]:
                    repo = f"bench/blob-{mode}-{rep}"
                    with Sampler(reg.pid) as s:
                        if mode == "monolithic":
                            t = push_monolithic(reg, repo, path, digest)
                        else:
                            t = push_chunked(reg, repo, path, digest, args.chunk_mib * MiB)
                    took(reg, s)
                    add(f"push {args.blob_mib} MiB blob, {mode} (MiB/s)", reg,
                        args.blob_mib / t)
                    add(f"push {args.blob_mib} MiB blob, {mode}: server CPU (s)", reg, s.cpu)
                    log(f"  {reg.name}: push {mode} {t:.2f} s ({args.blob_mib / t:.0f} MiB/s), "
                        f"CPU {s.cpu:.2f} s, peak RSS {s.peak_kb / 1024:.0f} MiB")
                    if mode == "monolithic":
                        if rep == 0:
                            verify_pull(reg, repo, digest, tmp)
                        with Sampler(reg.pid) as s:
                            t = pull_timed(reg, repo, digest)
                        took(reg, s)
                        add(f"pull {args.blob_mib} MiB blob (MiB/s)", reg, args.blob_mib / t)
                        add(f"pull {args.blob_mib} MiB blob: server CPU (s)", reg, s.cpu)
                        log(f"  {reg.name}: pull {t:.2f} s ({args.blob_mib / t:.0f} MiB/s), "
                            f"CPU {s.cpu:.2f} s, peak RSS {s.peak_kb / 1024:.0f} MiB")
                os.unlink(path)

        # -- manifest GETs under wrk: one small image, by tag and by digest.
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        layer = os.urandom(1024)
        urls = {}
        for reg in regs:
            cfg_digest = put_blob_bytes(reg, "bench/manifests", config)
            layer_digest = put_blob_bytes(reg, "bench/manifests", layer)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest, "size": len(layer)}],
            }, sort_keys=True).encode()
            mdigest = put_manifest(reg, "bench/manifests", "v1", manifest)
            urls[reg.name] = {kind: f"{reg.base}/v2/bench/manifests/manifests/{ref}"
                              for kind, ref in (("by tag", "v1"), ("by digest", mdigest))}
        for kind in ("by tag", "by digest"):
            for rep in range(args.repeat):
                for reg in regs if rep % 2 == 0 else regs[::-1]:
                    with Sampler(reg.pid) as s:
                        rps, p99, errors = wrk(urls[reg.name][kind], OCI_MANIFEST,
                                               args.wrk_threads, args.wrk_connections,
                                               args.wrk_seconds)
                    took(reg, s)
                    add(f"manifest GET {kind} (requests/s)", reg, rps)
                    add(f"manifest GET {kind}: server CPU per 1000 requests (ms)", reg,
                        s.cpu * 1000 * 1000 / (rps * args.wrk_seconds))
                    if p99 is not None:
                        add(f"manifest GET {kind}, p99 latency (ms)", reg, p99)
                    if errors:
                        notes.append(f"{reg.name} manifest GET {kind} rep {rep + 1}: {errors}")
                    log(f"  {reg.name}: manifest GET {kind} {rps:.0f} req/s, p99 {p99} ms "
                        f"{errors}")

        # -- skopeo copy of a multi-layer image, in and out. A fresh layout (fresh
        #    layers) per repetition, the same for both registries.
        for rep in range(args.repeat):
            layout = os.path.join(tmp, f"layout-{rep}")
            make_layout(layout, args.layers, args.layer_mib * MiB)
            for reg in regs if rep % 2 == 0 else regs[::-1]:
                dest = f"docker://127.0.0.1:{reg.port}/bench/image-{rep}:latest"
                with Sampler(reg.pid) as s:
                    t_in = skopeo_copy(f"oci:{layout}:latest", dest)
                    out = os.path.join(tmp, f"out-{reg.name}-{rep}")
                    t_out = skopeo_copy(dest, f"oci:{out}:latest")
                took(reg, s)
                shutil.rmtree(out)
                add(f"skopeo copy in, {args.layers} layers x {args.layer_mib} MiB (s)", reg, t_in)
                add(f"skopeo copy out, {args.layers} layers x {args.layer_mib} MiB (s)", reg,
                    t_out)
                log(f"  {reg.name}: skopeo in {t_in:.2f} s, out {t_out:.2f} s")
            shutil.rmtree(layout)

        time.sleep(2)
        for reg in regs:
            m = memory(reg.pid)
            add("RSS at rest after the load (MiB)", reg, m.get("VmRSS", 0) / 1024)
            add("RSS peak sampled under load (MiB)", reg, peaks[reg.name] / 1024)
            add("RssAnon peak sampled under load, without mapped files (MiB)", reg,
                anon_peaks[reg.name] / 1024)
            add("VmHWM, peak RSS of the run (MiB)", reg, m.get("VmHWM", 0) / 1024)
            if reg.proc.poll() is not None:
                die(f"{reg.name} died during the benchmark; its log:\n{reg.read_log()}")
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return samples, notes


# Which way is better, per metric: True when higher is better.
def higher_is_better(metric):
    return "MiB/s" in metric or "requests/s" in metric


def fmt(v):
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def report(samples, notes, args):
    metrics = []
    for (metric, _reg) in samples:
        if metric not in metrics:
            metrics.append(metric)
    order = ("push", "pull", "manifest", "skopeo", "RSS", "Rss", "VmHWM")
    metrics.sort(key=lambda m: next(i for i, p in enumerate(order + ("",)) if m.startswith(p)))
    lines = ["| metric | cascade | distribution | ratio |", "| --- | ---: | ---: | ---: |"]
    for metric in metrics:
        c = median(samples[(metric, "cascade")])
        d = median(samples[(metric, "distribution")])
        if higher_is_better(metric):
            ratio = c / d if d else float("inf")
        else:
            ratio = d / c if c else float("inf")
        lines.append(f"| {metric} | {fmt(c)} | {fmt(d)} | {ratio:.2f}× |")
    table = "\n".join(lines)

    load = os.getloadavg()
    dist_version = run([args.distribution, "--version"], check=False).stdout.strip()
    head = [
        "# cascade registry vs Distribution",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        f"cascade: {args.cascade}; distribution: {dist_version or args.distribution}.",
        f"Medians of {args.repeat} runs; ratio > 1 means cascade is better (throughput "
        "cascade/distribution; times and memory distribution/cascade).",
        f"Blob {args.blob_mib} MiB, chunks {args.chunk_mib} MiB; wrk -t{args.wrk_threads} "
        f"-c{args.wrk_connections} -d{args.wrk_seconds}s; image {args.layers} gzip layers of "
        f"{args.layer_mib} MiB random data.",
        "",
        "",
    ]
    raw = ["", "## Samples", ""]
    for metric in metrics:
        for name in ("cascade", "distribution"):
            vals = ", ".join(fmt(v) for v in samples[(metric, name)])
            raw.append(f"- {metric}, {name}: {vals}")
    if notes:
        raw += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return table, "\n".join(head) + table + "\n" + "\n".join(raw) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cascade", default=os.path.join(REPO_ROOT, "build", "cascade"),
                    help="the cascade binary (default: build/cascade of this checkout)")
    ap.add_argument("--distribution", default="docker-registry",
                    help="Distribution's binary (default: docker-registry)")
    ap.add_argument("--output", help="write the markdown report here as well")
    ap.add_argument("--quick", action="store_true",
                    help="a smaller run: 32 MiB blob, wrk 3 s, 4 layers of 1 MiB")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timed measurement")
    ap.add_argument("--blob-mib", type=int, help="blob size (256)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="PATCH chunk size (16)")
    ap.add_argument("--wrk-seconds", type=int, help="wrk duration (10)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--layers", type=int, help="layers of the skopeo image (8)")
    ap.add_argument("--layer-mib", type=int, help="random MiB per layer (4)")
    args = ap.parse_args()
    quick = args.quick
    args.blob_mib = args.blob_mib or (32 if quick else 256)
    args.wrk_seconds = args.wrk_seconds or (3 if quick else 10)
    args.layers = args.layers or (4 if quick else 8)
    args.layer_mib = args.layer_mib or (1 if quick else 4)
    args.cascade = os.path.abspath(args.cascade)
    if args.repeat < 1:
        die("--repeat must be at least 1")

    samples, notes = bench(args)
    table, full = report(samples, notes, args)
    print(full)
    if args.output:
        with open(args.output, "w") as f:
            f.write(full)
        log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
