#!/usr/bin/env python3
"""cascade's runtime against bare runc and Debian's podman, side by side.

One run measures, on the same busybox httpd image (built by `cascade build` from the
host's /bin/busybox, Debian's busybox-static; pulled from cascade's registry by podman
and unpacked once by umoci for bare runc):

  1. start-to-ready: from the start request until the replica answers HTTP 200 on its
     port, for
       cascade: `cascade apply -f` of a one-replica DeploymentConfig and its Route, until
                GET on the route's port (127.0.0.1) answers 200: what a client sees,
                including the router,
       runc:    `runc run -d` of the unpacked bundle (a plain directory, made once;
                umoci's config: new network namespace with loopback only; no seccomp
                filter, 3 capabilities) until GET on 127.0.0.1:8080 inside the container's
                network namespace answers 200; and, as a second column, the same rootfs with
                the config.json cascade wrote for its replica (Docker's seccomp profile for
                the native ABI, Docker's capabilities, /etc/hosts, a cgroup),
       podman:  `podman run -d --network none` (overlay storage, runc, cgroupfs; image
                pulled beforehand) until GET on 127.0.0.1:8080 inside its network
                namespace answers 200.
     All three run the replica in a fresh loopback-only network namespace, as cascade
     does; the poller is the same for all (a socket created inside the namespace with
     setns(2) for runc and podman, a plain loopback socket for cascade's route), tried
     every 2 ms. Goal (issue): cascade <= 1.3x bare runc.
  2. a rolling update of 10 replicas under wrk load through the route: `cascade build`
     pushes a new digest of the deployment's tag, the image trigger rolls it out;
     duration from the tag move until every replica runs the new digest and is ready
     (`cascade get deployments NAME -o json`), requests served, failures (non-2xx and
     socket errors, from wrk's summary). Goal: zero failed requests.
  3. router throughput and added latency: wrk straight to the replica's port (wrk run
     inside its network namespace with nsenter) vs through the route's port, and the
     shared Host-header port when the daemon has one (--router-listen): requests/s at
     -c CONNS, and p50/p99 latency at one connection. Goal: route >= 80% of direct.
  4. daemon resident memory (VmRSS, /proc) with 50 running replicas, and the summed Pss
     and anonymous memory of its helper processes (log shims: processes running the
     cascade binary; smaps_rollup).

Each cascade run uses its own temporary --root and ports (one daemon for 1-3, a fresh
one for 4); everything started is removed at the end, also on error or Ctrl-C (daemon
SIGTERM, which stops its replicas; runc delete; podman rm -f; unmounts). Prints a
markdown table with medians and ratios. Python standard library only; needs root.
Usage: see bench/README.md.
"""

import argparse
import ctypes
import glob
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
import tempfile
import threading
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTAINER_PORT = 8080
CLONE_NEWNET = 0x40000000
KEEP_LOGS = None  # --logs DIR: the daemons' logs are copied there when they stop


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600, check=True, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(cmd)} did not finish within {timeout} s") from e
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n"
                         f"{p.stderr[-3000:]}")
    return p


def mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                out.append(mp)
    return out


def remove_tree(path):
    if not os.path.exists(path):
        return
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def status_kb(pid, key="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == key:
                    return int(v.split()[0])
    except OSError:
        pass
    return 0


def smaps_rollup_kb(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Anonymous"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---- HTTP probing, also inside another network namespace --------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(pid):
    """A TCP socket created inside the network namespace of `pid` (a thread joins the
    namespace with setns(2), creates the socket and ends; the socket stays in that
    namespace). None when the process is gone."""
    result = {}

    def make():
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError:
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                result["error"] = os.strerror(ctypes.get_errno())
                return
            result["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            os.close(fd)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in result:
        raise BenchError(f"setns into the network namespace of pid {pid}: {result['error']}")
    return result.get("sock")


def http_status(port, pid=None, host_header="localhost", timeout=5.0):
    """Status code of GET / on 127.0.0.1:port (inside pid's network namespace when
    given), or None when nothing answers. The generous timeout lets a router that holds
    a connection until a replica is ready answer it (no retry delay)."""
    try:
        s = socket_in_netns(pid) if pid else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except BenchError:
        raise
    if s is None:
        return None
    try:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host_header}\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        return int(m.group(1)) if m else None
    except OSError:
        return None
    finally:
        s.close()


def wait_http_200(port, deadline, pid_of=None, what="", alive=None):
    """Polls every 2 ms until GET answers 200; returns the time it did (monotonic).
    pid_of: a callable giving the pid whose network namespace to probe in (None while
    unknown); alive: a callable that raises when waiting longer is pointless."""
    while True:
        pid = pid_of() if pid_of else None
        if pid_of is None or pid:
            if http_status(port, pid) == 200:
                return time.monotonic()
            if pid and not os.path.exists(f"/proc/{pid}"):
                raise BenchError(f"{what}: the container's process {pid} exited before "
                                 "it answered HTTP")
        if alive:
            alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: no HTTP 200 on port {port} before the deadline")
        time.sleep(0.002)


# ---- wrk -------------------------------------------------------------------------------


def parse_duration_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(text):
    """requests, requests/s, p50/p99 (ms), non-2xx, socket errors from wrk's summary."""
    out = {"requests": 0, "rps": 0.0, "p50": None, "p99": None, "non2xx": 0,
           "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"(\d+) requests in", text)
    if not m:
        raise BenchError(f"wrk printed no summary:\n{text[-2000:]}")
    out["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    for key, pct in (("p50", "50"), ("p99", "99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[key] = parse_duration_ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            out[k] = int(v)
    out["failures"] = out["non2xx"] + out["connect"] + out["read"] + out["write"] + \
        out["timeout"]
    return out


def wrk_cmd(url, threads, conns, seconds, host_header=None, timeout_s=5):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency",
           f"--timeout={timeout_s}s"]
    if host_header:
        cmd += ["-H", f"Host: {host_header}"]
    return cmd + [url]


def wrk(url, threads, conns, seconds, host_header=None, netns_pid=None):
    cmd = wrk_cmd(url, threads, conns, seconds, host_header)
    if netns_pid:
        cmd = ["nsenter", f"--net=/proc/{netns_pid}/ns/net"] + cmd
    return parse_wrk(run(cmd, timeout=seconds + 120).stdout)


# ---- the image -----------------------------------------------------------------------------

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /var/www && chmod 1777 /tmp && \\
    echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group
COPY index.html /var/www/index.html
EXPOSE 8080
# httpd as PID 1 would ignore SIGTERM; the shell's trap lets every runtime stop it at once.
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /var/www & wait"]
"""


def make_context(d, version):
    os.makedirs(d)
    shutil.copy2("/bin/busybox", os.path.join(d, "busybox"))
    write(os.path.join(d, "Dockerfile"), DOCKERFILE)
    write(os.path.join(d, "index.html"), f"<h1>bench httpd, version {version}</h1>\n")


# ---- cascade --------------------------------------------------------------------------------


class Cascade:
    def __init__(self, binary, tmp, name):
        self.binary = binary
        self.dir = os.path.join(tmp, name)
        self.root = os.path.join(self.dir, "root")
        os.makedirs(self.root)
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "serve.log")
        self._log = open(self.log_path, "wb")
        cmd = [binary, "serve", "--root", self.root, "--listen", f"127.0.0.1:{self.port}"]
        self.router_port = None
        if "--router-listen" in run([binary, "serve", "--help"], check=False).stdout:
            self.router_port = free_port()
            cmd += ["--router-listen", f"127.0.0.1:{self.router_port}"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.seq = 0
        self.shared_note = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"cascade serve exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.host + "/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise BenchError(f"cascade serve did not answer within 60 s:\n{self.tail()}")

    @property
    def pid(self):
        return self.proc.pid

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"cascade serve died (exit {self.proc.returncode}):\n{self.tail()}")

    def cli(self, *args, timeout=600):
        return run([self.binary, "--host", self.host, *args], timeout=timeout)

    def has_command(self, name):
        return re.search(rf"^\s+{name}\b", run([self.binary, "--help"], check=False).stdout,
                         re.M) is not None

    def build(self, context, tag):
        self.cli("build", "-t", tag, context)

    def manifest_digest(self, repo, tag):
        req = urllib.request.Request(
            f"{self.host}/v2/{repo}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                     "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["Docker-Content-Digest"]

    def objects_file(self, name, image, replicas, route_port):
        items = [{
            "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "strategy": {"type": "Rolling"},
                "template": {"spec": {"containers": [{
                    "name": name, "image": image,
                    "ports": [{"containerPort": CONTAINER_PORT}]}]}},
                "triggers": [{"type": "ConfigChange"}, {
                    "type": "ImageChange",
                    "imageChangeParams": {"automatic": True, "containerNames": [name],
                                          "from": {"kind": "ImageStreamTag", "name": image}}}],
            },
        }, {
            "apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"name": name,
                         "annotations": {"cascade.io/host-port": str(route_port)}},
            "spec": {"to": {"kind": "DeploymentConfig", "name": name},
                     "port": {"targetPort": CONTAINER_PORT}},
        }]
        self.seq += 1
        path = os.path.join(self.dir, f"objects-{self.seq}-{name}.json")
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, indent=1)
        return path

    def deployment(self, name):
        p = self.cli("get", "deployments", name, "-o", "json", timeout=60)
        obj = json.loads(p.stdout)
        if isinstance(obj, dict) and obj.get("kind") == "List":
            obj = next((i for i in obj.get("items", []) if i["metadata"]["name"] == name), {})
        return obj

    def wait_deployment(self, name, pred, timeout, what):
        deadline = time.monotonic() + timeout
        last = {}
        while time.monotonic() < deadline:
            self.check_alive()
            last = self.deployment(name)
            if pred(last.get("status", {})):
                return time.monotonic(), last
            time.sleep(0.1)
        raise BenchError(f"{what}: not reached within {timeout} s; last status:\n"
                         f"{json.dumps(last.get('status', {}), indent=1)[-3000:]}")

    def helper_rss_kb(self):
        """(count, {Rss, Pss, Anonymous: summed kB}) of the processes other than the daemon
        running the cascade binary or cascade-log-shim (the log shims). Rss counts the binary's
        shared pages in every process; Pss shares them out; Anonymous is private."""
        exes = {os.path.realpath(self.binary),
                os.path.realpath(os.path.join(os.path.dirname(self.binary), "cascade-log-shim"))}
        count, total = 0, {}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.pid:
                continue
            try:
                if os.path.realpath(f"/proc/{d}/exe") not in exes:
                    continue
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if self.root.encode() not in f.read() and not self._child_of_daemon(d):
                        continue
            except OSError:
                continue
            count += 1
            for k, v in smaps_rollup_kb(d).items():
                total[k] = total.get(k, 0) + v
        return count, total

    def _child_of_daemon(self, pid):
        for _ in range(8):
            ppid = status_kb(pid, "PPid")
            if ppid == self.pid:
                return True
            if ppid <= 1:
                return False
            pid = ppid
        return False

    def stop(self, keep_log_in=None):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                log("cascade serve did not stop within 120 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if keep_log_in or KEEP_LOGS:
            dest = keep_log_in or KEEP_LOGS
            os.makedirs(dest, exist_ok=True)
            shutil.copy(self.log_path, os.path.join(dest, os.path.basename(self.dir) + ".log"))
        # Containers the daemon left (it should leave none) carry its root in their
        # bundle path; runc's default root and the daemon's own runc root are checked.
        for runc_root in [None] + [os.path.join(dp, d) for dp, ds, _ in os.walk(self.root)
                                   for d in ds if d == "runc"]:
            args = ["runc"] + (["--root", runc_root] if runc_root else [])
            for cid in run(args + ["list", "-q"], check=False).stdout.split():
                st = run(args + ["state", cid], check=False).stdout
                if self.root in st:
                    log(f"removing container {cid} the daemon left behind")
                    run(args + ["delete", "--force", cid], check=False)
        remove_tree(self.dir)


# ---- bare runc and podman ----------------------------------------------------------------------


class BareRunc:
    def __init__(self, tmp, layout_ref):
        self.dir = os.path.join(tmp, "runc")
        self.root = os.path.join(self.dir, "state")
        self.bundle = os.path.join(self.dir, "bundle")
        os.makedirs(self.root)
        run(["umoci", "unpack", "--image", layout_ref, self.bundle])
        with open(os.path.join(self.bundle, "config.json")) as f:
            config = json.load(f)
        config["process"]["terminal"] = False
        nss = {n["type"] for n in config["linux"].get("namespaces", [])}
        if "network" not in nss:
            config["linux"]["namespaces"].append({"type": "network"})
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(config, f)
        self.ids = []
        self.cascade_config = None

    def use_cascade_config(self, config_path):
        """A second bundle: the same rootfs with the config.json cascade wrote for a replica
        (its seccomp profile, capabilities, mounts, cgroup); its /etc/hosts and
        /etc/resolv.conf copied, the cgroup per container."""
        with open(config_path) as f:
            config = json.load(f)
        bundle = os.path.join(self.dir, "bundle-cascade")
        os.makedirs(bundle)
        config["root"]["path"] = os.path.join(self.bundle, "rootfs")
        for m in config.get("mounts", []):
            if m.get("type") == "bind" and m["destination"] in ("/etc/hosts", "/etc/resolv.conf"):
                copy = os.path.join(bundle, os.path.basename(m["destination"]))
                shutil.copy(m["source"], copy)
                m["source"] = copy
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        self.cascade_config = (bundle, config)

    def start(self, cid, cascade_config=False):
        """Runs `runc run -d`; returns a callable giving the container's pid."""
        pid_file = os.path.join(self.dir, cid + ".pid")
        self.ids.append(cid)
        bundle = self.bundle
        if cascade_config:
            bundle, config = self.cascade_config
            if "cgroupsPath" in config["linux"]:  # runc delete removes it
                config["linux"]["cgroupsPath"] = "/cascade/" + cid
                with open(os.path.join(bundle, "config.json"), "w") as f:
                    json.dump(config, f)
        # The container inherits runc's stdout and stderr (no terminal): a file, not a
        # pipe that would stay open as long as the container runs.
        cmd = ["runc", "--root", self.root, "run", "-d", "--pid-file", pid_file,
               "--bundle", bundle, cid]
        with open(os.path.join(self.dir, cid + ".log"), "w+") as out:
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=120).returncode
            except subprocess.TimeoutExpired as e:
                raise BenchError(f"{' '.join(cmd)} did not finish within 120 s") from e
            if rc != 0:
                out.seek(0)
                raise BenchError(f"{' '.join(cmd)} exited {rc}:\n{out.read()[-3000:]}")
        return lambda: int(open(pid_file).read())

    def remove(self, cid):
        run(["runc", "--root", self.root, "delete", "--force", cid], check=False)
        if cid in self.ids:
            self.ids.remove(cid)

    def stop(self):
        for cid in list(self.ids):
            self.remove(cid)
        for cid in run(["runc", "--root", self.root, "list", "-q"], check=False).stdout.split():
            self.remove(cid)
        remove_tree(self.dir)


class Podman:
    def __init__(self, tmp, image):
        self.dir = os.path.join(tmp, "podman")
        self.image = image
        self.base = ["podman", "--root", os.path.join(self.dir, "root"),
                     "--runroot", os.path.join(self.dir, "run"),
                     "--tmpdir", os.path.join(self.dir, "tmp"),
                     "--storage-driver", "overlay", "--events-backend", "none",
                     "--cgroup-manager", "cgroupfs", "--runtime", "runc"]
        os.makedirs(self.dir)
        # podman (cgroupfs) creates libpod_parent/conmon in every hierarchy and never
        # removes them; stop() removes those this run created, when empty.
        self.new_cgroups = [d for d in self._cgroup_parents() if not os.path.exists(d)]
        self.version = run(["podman", "--version"]).stdout.strip()
        run(self.base + ["pull", "--tls-verify=false", "-q", image], timeout=300)
        self.ids = []

    def start(self, name):
        pid_file = os.path.join(self.dir, name + ".pid")
        self.ids.append(name)
        run(self.base + ["run", "-d", "--name", name, "--network", "none",
                         # podman's default rlimits are the host's maximum, which runc
                         # cannot set where CAP_SYS_RESOURCE is missing (as here).
                         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
                         "--pidfile", pid_file, self.image], timeout=120)
        return lambda: int(open(pid_file).read())

    def remove(self, name):
        run(self.base + ["rm", "-f", "-t", "0", name], check=False, timeout=120)
        if name in self.ids:
            self.ids.remove(name)

    def stop(self):
        for name in list(self.ids):
            self.remove(name)
        run(self.base + ["rm", "-a", "-f", "-t", "0"], check=False, timeout=120)
        run(self.base + ["rmi", "-a", "-f"], check=False, timeout=120)
        remove_tree(self.dir)
        for d in sorted(self.new_cgroups, key=len, reverse=True):
            try:
                os.rmdir(d)  # fails, harmlessly, while anything is in it
            except OSError:
                pass

    @staticmethod
    def _cgroup_parents():
        base = "/sys/fs/cgroup"
        roots = [base] if os.path.exists(os.path.join(base, "cgroup.controllers")) else [
            os.path.join(base, h) for h in os.listdir(base)]
        return [os.path.join(r, "libpod_parent", sub) for r in roots for sub in ("conmon", "")]


# ---- the measurements --------------------------------------------------------------------------


def measure_start(cascade, runc, podman, repeat, timeout):
    """{tool: [seconds]} from the start request until HTTP 200 on the replica's port."""
    samples = {"cascade": [], "runc": [], "runc, cascade's config": [], "podman": [],
               "cascade apply returned": []}
    scale = cascade.has_command("scale")

    def one(tool, i):
        deadline_s = timeout
        if tool == "cascade":
            name = f"start-{i}"
            port = free_port()
            path = cascade.objects_file(name, "bench-httpd:latest", 1, port)
            t0 = time.monotonic()
            cascade.cli("apply", "-f", path)
            samples["cascade apply returned"].append(time.monotonic() - t0)
            t1 = wait_http_200(port, t0 + deadline_s, what=f"cascade deployment {name}",
                               alive=cascade.check_alive)
            if runc.cascade_config is None:
                configs = sorted(glob.glob(os.path.join(cascade.root, "containers",
                                                        name + "-*", "config.json")))
                if configs:
                    runc.use_cascade_config(configs[0])
            if scale:  # keep the daemon's load the same for every repetition
                cascade.cli("scale", name, "--replicas", "0")
            return t1 - t0, name, port
        rt = podman if tool == "podman" else runc
        cid = f"bench-start-{i}" + ("-cc" if tool == "runc, cascade's config" else "")
        t0 = time.monotonic()
        pid_of_raw = (rt.start(cid, cascade_config=True) if tool == "runc, cascade's config"
                      else rt.start(cid))

        def pid_of():
            try:
                return pid_of_raw()
            except (OSError, ValueError):
                return None

        t1 = wait_http_200(CONTAINER_PORT, t0 + deadline_s, pid_of=pid_of,
                           what=f"{tool} container {cid}")
        rt.remove(cid)
        return t1 - t0, None, None

    tools = ["cascade", "runc", "runc, cascade's config", "podman"]
    log("start-to-ready: one untimed start per tool first (caches, page cache)")
    one("cascade", "warm")
    if runc.cascade_config is None:
        log("  no config.json of cascade's replica found: runc with cascade's config not measured")
        tools.remove("runc, cascade's config")
    for tool in tools[1:]:
        one(tool, "warm")
    samples["cascade apply returned"].clear()
    last = None
    for i in range(repeat):
        order = tools if i % 2 == 0 else tools[::-1]
        for tool in order:
            secs, name, port = one(tool, i)
            samples[tool].append(secs)
            if name:
                last = (name, port)
            log(f"  {tool}: {secs * 1000:.0f} ms")
    return samples, last


def measure_router(cascade, args):
    """wrk direct (inside the replica's netns) vs through the route port (and the shared
    Host-header port). Returns {label: [wrk results]} for throughput and latency."""
    name, port = "router", free_port()
    cascade.cli("apply", "-f", cascade.objects_file(name, "bench-httpd:latest", 1, port))
    wait_http_200(port, time.monotonic() + args.timeout, what="cascade deployment router")
    _, obj = cascade.wait_deployment(
        name, lambda s: s.get("readyReplicas") == 1 and s.get("pods"), args.timeout,
        "router deployment ready")
    pid = next(p["pid"] for p in obj["status"]["pods"] if p.get("state") == "ready")
    targets = [("direct", f"http://127.0.0.1:{CONTAINER_PORT}/", None, pid),
               ("route port", f"http://127.0.0.1:{port}/", None, None)]
    if cascade.router_port:
        code = http_status(cascade.router_port, host_header=f"{name}.localhost")
        if code == 200:
            targets.append(("shared port (Host header)",
                            f"http://127.0.0.1:{cascade.router_port}/", f"{name}.localhost",
                            None))
        else:
            cascade.shared_note = (f"the shared port {cascade.router_port} answers {code} for "
                                   f"Host: {name}.localhost; not measured")
            log("  " + cascade.shared_note)
    results = {}
    for i in range(args.repeat):
        order = targets if i % 2 == 0 else targets[::-1]
        for label, url, host, netns in order:
            for kind, threads, conns in (("throughput", args.wrk_threads, args.wrk_connections),
                                         ("latency", 1, 1)):
                r = wrk(url, threads, conns, args.wrk_seconds, host, netns)
                results.setdefault((label, kind), []).append(r)
                log(f"  {label} {kind}: {r['rps']:.0f} req/s, p50 {r['p50']} ms, "
                    f"p99 {r['p99']} ms, failures {r['failures']}")
    return results


def measure_rollout(cascade, args, tmp):
    """A 10-replica deployment rolled to a new digest under wrk load through its route."""
    name, port, image = "roll", free_port(), "bench-roll:latest"
    cascade.build(os.path.join(tmp, "ctx-v1"), image)
    cascade.cli("apply", "-f", cascade.objects_file(name, image, args.rollout_replicas, port))
    n = args.rollout_replicas
    cascade.wait_deployment(
        name, lambda s: s.get("readyReplicas") == n and s.get("replicas") == n,
        args.timeout, f"{n} replicas of {name} ready")
    wait_http_200(port, time.monotonic() + 60, what=f"route of {name}")
    v1 = cascade.deployment(name)["status"].get("latestVersion", 0)
    log(f"rolling update: {n} replicas ready; wrk -t{args.wrk_threads} "
        f"-c{args.rollout_connections} through the route")
    out_path = os.path.join(cascade.dir, "wrk-rollout.txt")
    with open(out_path, "w") as out:
        load = subprocess.Popen(
            wrk_cmd(f"http://127.0.0.1:{port}/", args.wrk_threads, args.rollout_connections,
                    args.timeout + 60), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(2)
        t_build = time.monotonic()
        cascade.build(os.path.join(tmp, "ctx-v2"), image)
        t0 = time.monotonic()
        digest = cascade.manifest_digest("bench-roll", "latest")

        def done(s):
            pods = s.get("pods", [])
            return (s.get("latestVersion", 0) > v1 and s.get("readyReplicas") == n and
                    len(pods) == n and
                    all(p.get("image") == digest and p.get("state") == "ready" for p in pods))

        t1, obj = cascade.wait_deployment(name, done, args.timeout,
                                          f"rollout of {name} to {digest}")
        time.sleep(2)  # load on the new revision alone for a moment
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
            try:
                load.wait(timeout=30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
    with open(out_path) as f:
        text = f.read()
    r = parse_wrk(text)
    r["duration"] = t1 - t0
    r["build"] = t0 - t_build
    r["phase"] = obj["status"].get("phase")
    log(f"  rollout {r['duration']:.2f} s (build {r['build']:.2f} s), {r['requests']} requests, "
        f"{r['failures']} failed (non-2xx {r['non2xx']}, connect {r['connect']}, "
        f"read {r['read']}, write {r['write']}, timeout {r['timeout']})")
    if r["failures"]:
        log("wrk's output:\n" + text)
    return r


def measure_memory(binary, args, tmp):
    cascade = Cascade(binary, tmp, "cascade-memory")
    try:
        cascade.build(os.path.join(tmp, "ctx-v1"), "bench-httpd:latest")
        rest = status_kb(cascade.pid)
        n = args.memory_replicas
        t0 = time.monotonic()
        cascade.cli("apply", "-f",
                    cascade.objects_file("many", "bench-httpd:latest", n, free_port()))
        t1, _ = cascade.wait_deployment(
            "many", lambda s: s.get("readyReplicas") == n, max(args.timeout, 10 * n),
            f"{n} replicas ready")
        time.sleep(3)
        cascade.check_alive()
        rss = status_kb(cascade.pid)
        hwm = status_kb(cascade.pid, "VmHWM")
        helpers, helpers_kb = cascade.helper_rss_kb()
        log(f"  {n} replicas ready in {t1 - t0:.1f} s; daemon VmRSS {rss / 1024:.1f} MiB "
            f"(at rest {rest / 1024:.1f} MiB), {helpers} helper processes: Rss "
            f"{helpers_kb.get('Rss', 0) / 1024:.1f} MiB, Pss {helpers_kb.get('Pss', 0) / 1024:.1f}"
            f" MiB, anonymous {helpers_kb.get('Anonymous', 0) / 1024:.1f} MiB")
        return {"replicas": n, "rest_kb": rest, "rss_kb": rss, "hwm_kb": hwm,
                "helpers": helpers, "helpers_kb": helpers_kb, "start_all": t1 - t0}
    finally:
        cascade.stop()


# ---- report ------------------------------------------------------------------------------------


def report(args, start, router, rollout, mem, podman_version, shared_note, cli_ms):
    load = os.getloadavg()
    out = ["# cascade runtime vs runc and podman", ""]
    out.append(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
               f"{os.cpu_count()} CPUs, load average at the end {load[0]:.2f} {load[1]:.2f} "
               f"{load[2]:.2f}. {run(['runc', '--version']).stdout.splitlines()[0]}; "
               f"{podman_version}. Medians of {args.repeat}.")
    out.append("")
    out.append("| metric | cascade | runc | podman | ratio | goal |")
    out.append("| --- | ---: | ---: | ---: | ---: | --- |")
    if start:
        c, r, p = (median(start[t]) * 1000 for t in ("cascade", "runc", "podman"))
        out.append(f"| start to ready, HTTP 200 (ms) | {c:.0f} | {r:.0f} | {p:.0f} | "
                   f"{c / r:.2f}× runc, {c / p:.2f}× podman | ≤ 1.3× runc "
                   f"{'✓' if c / r <= 1.3 else '✗'} |")
        if start.get("runc, cascade's config"):
            rc = median(start["runc, cascade's config"]) * 1000
            out.append(f"| start to ready, runc given cascade's config.json (ms) | | {rc:.0f} | | "
                       f"cascade {c / rc:.2f}× this | |")
    if rollout:
        n = args.rollout_replicas
        out.append(f"| rolling update of {n} replicas under wrk: duration (s) | "
                   f"{rollout['duration']:.2f} | | | | |")
        out.append(f"| rolling update: requests served / failed | {rollout['requests']} / "
                   f"{rollout['failures']} | | | | zero failed "
                   f"{'✓' if rollout['failures'] == 0 else '✗'} |")
    if router:
        def med(label, kind, key):
            vals = [r[key] for r in router[(label, kind)] if r[key] is not None]
            return median(vals)
        d_rps = med("direct", "throughput", "rps")
        d50, d99 = med("direct", "latency", "p50"), med("direct", "latency", "p99")
        out.append(f"| backend direct, wrk -c{args.wrk_connections} (requests/s) | {d_rps:.0f} "
                   f"| | | | |")
        labels = ["route port", "shared port (Host header)"]
        for label in labels:
            if (label, "throughput") not in router:
                continue
            rps = med(label, "throughput", "rps")
            p50, p99 = med(label, "latency", "p50"), med(label, "latency", "p99")
            failed = sum(r["failures"] for k in ("throughput", "latency")
                         for r in router[(label, k)])
            ok = rps / d_rps >= 0.8 and not failed
            out.append(f"| through the {label}, wrk -c{args.wrk_connections} (requests/s) | "
                       f"{rps:.0f} | | | {rps / d_rps:.0%} of direct"
                       f"{f', {failed} failed' if failed else ''} | ≥ 80% "
                       f"{'✓' if ok else '✗'} |")
            out.append(f"| added latency through the {label}, one connection: p50 / p99 (ms) | "
                       f"{p50 - d50:+.3f} / {p99 - d99:+.3f} | | | | |")
        fails = sum(r["failures"] for rs in router.values() for r in rs)
        out.append(f"| router runs: failed requests | {fails} | | | | |")
    if mem:
        out.append(f"| daemon VmRSS with {mem['replicas']} running replicas (MiB) | "
                   f"{mem['rss_kb'] / 1024:.1f} | | | | |")
        h = mem["helpers_kb"]
        out.append(f"| helper processes (log shims): count; summed Pss / anonymous (MiB) | "
                   f"{mem['helpers']}; {h.get('Pss', 0) / 1024:.1f} / "
                   f"{h.get('Anonymous', 0) / 1024:.1f} | | | | |")
    out.append("")
    out.append("Details:")
    if start:
        out.append("- start to ready samples (ms): " + "; ".join(
            f"{t} {[round(x * 1000) for x in start[t]]}" for t in
            ("cascade", "runc", "runc, cascade's config", "podman") if start.get(t)))
        out.append("- of cascade's start to ready, `cascade apply` itself took (ms): "
                   f"{[round(x * 1000) for x in start['cascade apply returned']]}")
    if router:
        out.append(f"- direct latency one connection: p50 {d50:.3f} ms, p99 {d99:.3f} ms")
        for (label, kind), rs in router.items():
            out.append(f"- {label} {kind}: " + ", ".join(
                f"{r['rps']:.0f} req/s p50 {r['p50']} p99 {r['p99']} fail {r['failures']}"
                for r in rs))
    if rollout:
        out.append(f"- rolling update: new image built and pushed in {rollout['build']:.2f} s "
                   f"(not counted), phase after: {rollout['phase']}; wrk "
                   f"-t{args.wrk_threads} -c{args.rollout_connections}: {rollout['rps']:.0f} "
                   f"req/s, non-2xx {rollout['non2xx']}, socket errors connect "
                   f"{rollout['connect']} read {rollout['read']} write {rollout['write']} "
                   f"timeout {rollout['timeout']}")
    if mem:
        out.append(f"- memory: daemon VmRSS at rest {mem['rest_kb'] / 1024:.1f} MiB, VmHWM "
                   f"{mem['hwm_kb'] / 1024:.1f} MiB; {mem['replicas']} replicas ready "
                   f"{mem['start_all']:.1f} s after apply; helpers' summed Rss (the binary's "
                   f"shared pages counted in each) {mem['helpers_kb'].get('Rss', 0) / 1024:.1f} MiB")
    if shared_note:
        out.append(f"- {shared_note}")
    if cli_ms:
        out.append(f"- `cascade --help` (the CLI's process start alone) takes {cli_ms:.0f} ms "
                   "(median of 5)")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cascade", default=os.path.join(REPO_ROOT, "build", "cascade"))
    ap.add_argument("--repeat", type=int, help="repetitions of each timed measurement "
                    "(5; --quick: 3)")
    ap.add_argument("--wrk-seconds", type=int, help="duration of each router wrk run (10; "
                    "--quick: 3)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--rollout-replicas", type=int, default=10)
    ap.add_argument("--rollout-connections", type=int, default=4)
    ap.add_argument("--memory-replicas", type=int, default=50)
    ap.add_argument("--cases", default="start,router,rollout,memory",
                    help="comma-separated subset of start,router,rollout,memory")
    ap.add_argument("--timeout", type=int, default=300,
                    help="seconds any one wait may take before the run fails (300)")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, wrk 3 s")
    ap.add_argument("--tmpdir", default="/var/tmp", help="where state roots go")
    ap.add_argument("--output", help="also write the report here")
    ap.add_argument("--logs", help="copy each cascade daemon's log into this directory")
    args = ap.parse_args()
    global KEEP_LOGS
    KEEP_LOGS = os.path.abspath(args.logs) if args.logs else None
    args.repeat = args.repeat or (3 if args.quick else 5)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
    args.cascade = os.path.abspath(args.cascade)
    cases = set(args.cases.split(","))
    if cases - {"start", "router", "rollout", "memory"}:
        sys.exit(f"unknown cases: {', '.join(sorted(cases - {'start', 'router', 'rollout', 'memory'}))}")
    if os.geteuid() != 0:
        sys.exit("bench/runtime.py needs root (runc, network namespaces, overlay mounts)")
    for prog, pkg in (("runc", "runc"), ("podman", "podman"), ("wrk", "wrk"),
                      ("umoci", "umoci"), ("skopeo", "skopeo"), ("nsenter", "util-linux")):
        if not shutil.which(prog):
            sys.exit(f"{prog} is not installed (apt-get install {pkg})")
    if not os.path.exists("/bin/busybox"):
        sys.exit("/bin/busybox is missing (apt-get install busybox-static)")
    if not os.access(args.cascade, os.X_OK):
        sys.exit(f"{args.cascade} is not built (cmake --build build --target cascade) "
                 "or pass --cascade PATH")

    tmp = tempfile.mkdtemp(prefix="cascade-bench-runtime-", dir=args.tmpdir)
    cleanups = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = router = rollout = mem = None
    podman_version = ""
    shared_note = ""
    cli_ms = None
    code = 0
    try:
        log(f"temporary directory {tmp}")
        make_context(os.path.join(tmp, "ctx-v1"), 1)
        make_context(os.path.join(tmp, "ctx-v2"), 2)
        if cases & {"start", "router", "rollout"}:
            cascade = Cascade(args.cascade, tmp, "cascade")
            cleanups.append(cascade.stop)
            log(f"cascade serve on {cascade.host}, pid {cascade.pid}"
                + (f", shared router port {cascade.router_port}" if cascade.router_port else
                   " (no --router-listen: no shared Host-header port)"))
            cascade.build(os.path.join(tmp, "ctx-v1"), "bench-httpd:latest")
            if "start" in cases:
                layout = os.path.join(tmp, "layout")
                run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                     f"docker://127.0.0.1:{cascade.port}/bench-httpd:latest",
                     f"oci:{layout}:latest"])
                runc = BareRunc(tmp, f"{layout}:latest")
                cleanups.append(runc.stop)
                podman = Podman(tmp, f"127.0.0.1:{cascade.port}/bench-httpd:latest")
                podman_version = podman.version
                cleanups.append(podman.stop)
                log("start to ready")
                start, _ = measure_start(cascade, runc, podman, args.repeat, args.timeout)
                cli = []
                for _ in range(5):
                    t0 = time.monotonic()
                    run([args.cascade, "--help"])
                    cli.append(time.monotonic() - t0)
                cli_ms = median(cli) * 1000
            if "router" in cases:
                log("router throughput and latency")
                router = measure_router(cascade, args)
                shared_note = cascade.shared_note
                if not cascade.router_port:
                    shared_note = "cascade serve has no --router-listen: no shared port"
            if "rollout" in cases:
                log("rolling update under load")
                rollout = measure_rollout(cascade, args, tmp)
            cascade.check_alive()
        if "memory" in cases:
            log(f"daemon memory with {args.memory_replicas} replicas")
            mem = measure_memory(args.cascade, args, tmp)
    except BenchError as e:
        log("error: " + str(e))
        for c in cleanups:
            owner = getattr(c, "__self__", None)
            if isinstance(owner, Cascade):
                log("cascade daemon log tail:\n" + owner.tail())
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        for c in reversed(cleanups):
            try:
                c()
            except Exception as e:  # keep cleaning up
                log(f"cleanup: {e}")
        remove_tree(tmp)
    if code:
        return code
    text = report(args, start, router, rollout, mem, podman_version, shared_note, cli_ms)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
