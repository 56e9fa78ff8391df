#!/usr/bin/env python3
"""cascade's image builder against Debian's buildah (`buildah bud`), side by side.

Builds the same Dockerfiles with `cascade build` (against a `cascade serve` daemon on a
free loopback port with its own temporary state root) and with `buildah bud` (its own
temporary --root/--runroot), on the same base image, and prints wall-time ratios:

  * cold build:     a small multi-step Dockerfile (RUN, COPY, ENV, WORKDIR, CMD) built with
                    the step cache off (cascade --no-cache, buildah --layers --no-cache),
  * cached rebuild: the same Dockerfile built again with nothing changed (cache on),
  * context:        COPY . /ctx of a 500 MiB context of 20,000 files (cold),
  * run-300MiB:     a RUN writing 300 MiB from /dev/urandom (cold); --mixed adds one writing
                    a compressible 300 MiB mix (text, zeros, random),

each --repeat times (default 3), the two tools taking turns at going first; the median
is reported. The base image `bench-busybox:latest` is built offline in both tools from
the host's /bin/busybox (Debian's busybox-static): FROM scratch, COPY busybox, RUN
busybox --install -s. Its build is not timed.

buildah runs with --layers (a layer per step, as cascade and docker do, so a rebuild can
hit the cache). Before timing, each buildah configuration of --isolation chroot / oci
(runc) and --storage-driver vfs / overlay builds the cold case once; the fastest is used
for every measurement (override with --buildah-config ISOLATION,DRIVER).

The ratio column is buildah / cascade: > 1 means cascade is faster (goal from the issue:
cold >= 2, cached >= 5). Python standard library only. Needs root (runc, overlay mounts).
Every state directory, mount and process it creates is removed at the end, also on error
or Ctrl-C. Usage: see bench/README.md.
"""

import argparse
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1024 * 1024
BASE_TAG = "bench-busybox:latest"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=1800, check=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n"
                         f"{p.stderr[-3000:]}")
    return p


def timed(cmd, env=None):
    t0 = time.monotonic()
    p = run(cmd, env=env)
    return time.monotonic() - t0, p


def mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                out.append(mp)
    return out


def unmount_all(path):
    # Deepest first; lazy, so a busy mount cannot keep the directory.
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_tree(path):
    if not os.path.exists(path):
        return
    unmount_all(path)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # immutable files, leftovers of a crashed tool
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)


# ---- inputs ------------------------------------------------------------------------------

BASE_DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"""

SMALL_DOCKERFILE = f"""FROM {BASE_TAG}
ENV APP_HOME=/srv/app LANG=C.UTF-8
WORKDIR /srv/app
RUN mkdir -p /srv/app/data /var/log/app && echo "built" > /srv/app/BUILD && \\
    for i in $(seq 1 200); do echo "line $i" >> /srv/app/data/lines.txt; done
COPY app/ /srv/app/
RUN chmod 0755 /srv/app/run.sh && mkdir -p /etc && \\
    echo "app:x:1000:1000::/srv/app:/bin/sh" >> /etc/passwd && chown -R 1000:1000 /srv/app/data
COPY config.ini /etc/app/config.ini
USER app
EXPOSE 8080
CMD ["/srv/app/run.sh"]
"""

CONTEXT_DOCKERFILE = f"""FROM {BASE_TAG}
COPY . /ctx
"""

RUN_RANDOM_DOCKERFILE = f"""FROM {BASE_TAG}
RUN dd if=/dev/urandom of=/big bs=1M count=RUN_MIB 2>/dev/null
"""

# A compressible mix: a third text (seq), a third zeros, a third random.
RUN_MIXED_DOCKERFILE = f"""FROM {BASE_TAG}
RUN seq 1 100000000 | head -c $((RUN_MIB * 1024 * 1024 / 3)) > /text && \\
    dd if=/dev/zero of=/zeros bs=1M count=$((RUN_MIB / 3)) 2>/dev/null && \\
    dd if=/dev/urandom of=/random bs=1M count=$((RUN_MIB / 3)) 2>/dev/null
"""


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def make_base_context(d):
    os.makedirs(d)
    shutil.copy2("/bin/busybox", os.path.join(d, "busybox"))
    write(os.path.join(d, "Dockerfile"), BASE_DOCKERFILE)


def make_small_context(d):
    os.makedirs(d)
    write(os.path.join(d, "Dockerfile"), SMALL_DOCKERFILE)
    write(os.path.join(d, "app/run.sh"), "#!/bin/sh\nexec httpd -f -p 8080 -h /srv/app\n")
    write(os.path.join(d, "app/index.html"), "<h1>bench</h1>\n" * 50)
    for i in range(20):
        write(os.path.join(d, f"app/static/file{i}.txt"), f"static {i}\n" * (100 + 37 * i))
    write(os.path.join(d, "config.ini"), "[app]\nport=8080\n")


def make_big_context(d, total_mib, files):
    """`files` files in 100-file directories, `total_mib` MiB in all: sizes spread from
    tiny to ~4x the mean; half random bytes, half text-like (compressible)."""
    os.makedirs(d)
    write(os.path.join(d, "Dockerfile"), CONTEXT_DOCKERFILE)
    rng = random.Random(42)
    weights = [rng.random() ** 3 for _ in range(files)]
    scale = total_mib * MiB / sum(weights)
    text_block = b"".join(b"context line %08d of the benchmark\n" % i for i in range(4096))
    for i, w in enumerate(weights):
        sub = os.path.join(d, f"dir{i // 100:03d}")
        if i % 100 == 0:
            os.makedirs(sub)
        size = int(w * scale)
        with open(os.path.join(sub, f"f{i:05d}.dat"), "wb") as f:
            if i % 2:
                f.write(os.urandom(size))
            else:
                left = size
                while left:
                    chunk = text_block[:left]
                    f.write(chunk)
                    left -= len(chunk)


def make_run_context(d, dockerfile, run_mib):
    os.makedirs(d)
    write(os.path.join(d, "Dockerfile"), dockerfile.replace("RUN_MIB", str(run_mib)))


# ---- the two builders ----------------------------------------------------------------------


class Cascade:
    name = "cascade"

    def __init__(self, binary, tmp):
        self.binary = binary
        self.root = os.path.join(tmp, "cascade-root")
        os.makedirs(self.root)
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(tmp, "cascade.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--root", self.root, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
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
            time.sleep(0.1)
        raise BenchError(f"cascade serve did not answer within 60 s:\n{self.tail()}")

    def describe(self):
        return f"cascade serve --root TMP ({self.binary})"

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def build(self, context, tag, cache):
        cmd = [self.binary, "--host", self.host, "build", "-t", tag]
        if not cache:
            cmd.append("--no-cache")
        cmd.append(context)
        return timed(cmd)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        for line in run(["runc", "list", "-q"], check=False).stdout.split():
            # Containers of this daemon carry its state root in their bundle path.
            st = run(["runc", "state", line], check=False).stdout
            if self.root in st:
                run(["runc", "delete", "--force", line], check=False)
        remove_tree(self.root)


class Buildah:
    name = "buildah"

    def __init__(self, tmp, isolation, driver):
        self.isolation = isolation
        self.driver = driver
        self.dir = os.path.join(tmp, f"buildah-{isolation}-{driver}")
        self.root = os.path.join(self.dir, "root")
        self.runroot = os.path.join(self.dir, "runroot")
        os.makedirs(self.root)
        os.makedirs(self.runroot)
        # No registries: short names resolve to the local image or fail.
        self.registries = os.path.join(self.dir, "registries.conf")
        write(self.registries, 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n')
        self.env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=self.registries,
                        BUILDAH_ISOLATION=isolation)

    def describe(self):
        iso = "oci --runtime runc" if self.isolation == "oci" else self.isolation
        return f"buildah bud --layers --isolation {iso}, storage {self.driver}"

    def global_args(self):
        return ["buildah", "--root", self.root, "--runroot", self.runroot,
                "--storage-driver", self.driver]

    def build(self, context, tag, cache):
        cmd = self.global_args() + ["bud", "--layers", "--pull-never", "--isolation",
                                    self.isolation, "-t", tag]
        if self.isolation == "oci":
            cmd += ["--runtime", "runc"]
        if not cache:
            cmd.append("--no-cache")
        cmd.append(context)
        return timed(cmd, env=self.env)

    def stop(self):
        run(self.global_args() + ["rm", "--all"], check=False, env=self.env)
        run(self.global_args() + ["rmi", "--all", "--force"], check=False, env=self.env)
        unmount_all(self.dir)
        remove_tree(self.dir)


# ---- measurements --------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def measure(tools, context, tag, cache, repeat, warm):
    """{tool name: [seconds]}: `repeat` builds per tool, alternating who goes first.
    With cache, each tool first builds once untimed (`warm`) so the rebuild can hit."""
    samples = {t.name: [] for t in tools}
    if warm:
        for t in tools:
            t.build(context, tag, cache=True)
    for i in range(repeat):
        order = tools if i % 2 == 0 else list(reversed(tools))
        for t in order:
            secs, _ = t.build(context, tag, cache=cache)
            samples[t.name].append(secs)
            log(f"  {t.name}: {secs:.2f} s")
    return samples


def pick_buildah(tmp, configs, probe_context):
    """Builds the probe context cold once per configuration (after an untimed warm-up that
    also imports the base); returns the fastest Buildah and the probe times."""
    times = {}
    best = None
    for iso, driver in configs:
        b = Buildah(tmp, iso, driver)
        try:
            b.build(probe_context["base"], BASE_TAG, cache=True)
            b.build(probe_context["small"], "bench-probe:latest", cache=False)
            secs = min(b.build(probe_context["small"], "bench-probe:latest", cache=False)[0]
                       for _ in range(2))
        except BenchError as e:
            log(f"buildah {iso}/{driver} does not work here: {str(e)[-1500:]}")
            b.stop()
            continue
        times[f"{iso}/{driver}"] = secs
        log(f"buildah {iso}/{driver}: cold small build {secs:.2f} s")
        if best is None or secs < times[f"{best.isolation}/{best.driver}"]:
            if best:
                best.stop()
            best = b
        else:
            b.stop()
    if best is None:
        raise BenchError("no buildah configuration works on this machine")
    return best, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cascade", default=os.path.join(REPO_ROOT, "build", "cascade"))
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (3; --quick: 1)")
    ap.add_argument("--context-mib", type=int, default=500)
    ap.add_argument("--context-files", type=int, default=20000)
    ap.add_argument("--run-mib", type=int, default=300)
    ap.add_argument("--mixed", action="store_true",
                    help="also a RUN writing a compressible 300 MiB mix")
    ap.add_argument("--cases", default="cold,cached,context,run",
                    help="comma-separated subset of cold,cached,context,run")
    ap.add_argument("--buildah-config", action="append", default=[],
                    help="ISOLATION,DRIVER (chroot|oci, vfs|overlay); repeatable; default: all "
                         "four, the fastest is used")
    ap.add_argument("--quick", action="store_true",
                    help="50 MiB / 2,000-file context, 50 MiB RUN, 1 repetition")
    ap.add_argument("--tmpdir", default="/var/tmp", help="where state and contexts go")
    ap.add_argument("--output", help="also write the report here")
    args = ap.parse_args()
    if args.quick:
        args.context_mib, args.context_files, args.run_mib = 50, 2000, 50
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if os.geteuid() != 0:
        sys.exit("bench/build.py needs root (runc, overlay mounts)")
    for prog in ("buildah", "runc"):
        if not shutil.which(prog):
            sys.exit(f"{prog} is not installed (apt-get install {prog})")
    if not os.path.exists("/bin/busybox"):
        sys.exit("/bin/busybox is missing (apt-get install busybox-static)")
    if not os.access(args.cascade, os.X_OK):
        sys.exit(f"{args.cascade} is not built (cmake --build build)")
    cases = set(args.cases.split(","))
    configs = [tuple(c.split(",")) for c in args.buildah_config] or [
        ("chroot", "overlay"), ("chroot", "vfs"), ("oci", "overlay"), ("oci", "vfs")]

    tmp = tempfile.mkdtemp(prefix="cascade-bench-build-", dir=args.tmpdir)
    tools = []
    interrupted = []
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(1) or sys.exit(143))
    try:
        ctx = {}
        for name, maker in (("base", make_base_context), ("small", make_small_context)):
            ctx[name] = os.path.join(tmp, "ctx-" + name)
            maker(ctx[name])
        if "context" in cases:
            ctx["context"] = os.path.join(tmp, "ctx-context")
            log(f"writing a {args.context_mib} MiB context of {args.context_files} files")
            make_big_context(ctx["context"], args.context_mib, args.context_files)
        if "run" in cases:
            ctx["run"] = os.path.join(tmp, "ctx-run")
            make_run_context(ctx["run"], RUN_RANDOM_DOCKERFILE, args.run_mib)
            if args.mixed:
                ctx["run-mixed"] = os.path.join(tmp, "ctx-run-mixed")
                make_run_context(ctx["run-mixed"], RUN_MIXED_DOCKERFILE, args.run_mib)

        log("choosing the fastest buildah configuration")
        buildah, probe = pick_buildah(tmp, configs, ctx)
        tools.append(buildah)
        cascade = Cascade(args.cascade, tmp)
        tools.append(cascade)
        tools.reverse()  # cascade first in the table
        cascade.build(ctx["base"], BASE_TAG, cache=True)

        plan = []
        if "cold" in cases:
            plan.append(("cold build (small Dockerfile, 10 instructions)", ctx["small"], False))
        if "cached" in cases:
            plan.append(("cached rebuild (same Dockerfile, nothing changed)", ctx["small"], True))
        if "context" in cases:
            plan.append((f"COPY . of a {args.context_mib} MiB context, "
                         f"{args.context_files} files (cold)", ctx["context"], False))
        if "run" in cases:
            plan.append((f"RUN writing {args.run_mib} MiB of /dev/urandom (cold)", ctx["run"],
                         False))
            if "run-mixed" in ctx:
                plan.append((f"RUN writing a compressible {args.run_mib} MiB mix (cold)",
                             ctx["run-mixed"], False))
        rows = []
        for i, (label, context, cache) in enumerate(plan):
            log(label)
            samples = measure(tools, context, f"bench-case{i}:latest", cache, args.repeat,
                              warm=cache)
            rows.append((label, samples))
    except BenchError as e:
        log("error: " + str(e))
        for t in tools:
            if isinstance(t, Cascade):
                log("cascade daemon log tail:\n" + t.tail())
        return_code = 1
        rows = None
    except KeyboardInterrupt:
        return_code, rows = 130, None
    else:
        return_code = 0
    finally:
        for t in tools:
            try:
                t.stop()
            except Exception as e:  # keep cleaning up
                log(f"stopping {t.name}: {e}")
        remove_tree(tmp)
    if rows is None:
        return return_code

    load = os.getloadavg()
    out = []
    out.append(f"cascade build vs {buildah.describe()}")
    out.append(f"host: {platform.node()}, {os.cpu_count()} CPUs, load average "
               f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; median of {args.repeat}")
    out.append("buildah configurations tried (cold small build, s): " +
               ", ".join(f"{k} {v:.2f}" for k, v in probe.items()))
    out.append("")
    out.append("| case | cascade (s) | buildah (s) | buildah / cascade |")
    out.append("| --- | ---: | ---: | ---: |")
    for label, samples in rows:
        c, b = median(samples["cascade"]), median(samples["buildah"])
        out.append(f"| {label} | {c:.2f} | {b:.2f} | {b / c:.2f}× |")
    out.append("")
    out.append("samples (s): " + "; ".join(
        f"{label.split(' (')[0]}: cascade {[round(x, 2) for x in s['cascade']]} "
        f"buildah {[round(x, 2) for x in s['buildah']]}" for label, s in rows))
    report = "\n".join(out) + "\n"
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
