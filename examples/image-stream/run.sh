#!/usr/bin/env bash
# The image-stream example end to end, from examples/image-stream/template.yaml
# (an OpenShift Template), on a machine without internet:
#   1. start a daemon unless one answers at $CASCADE_HOST,
#   2. build the "upstream" OS base from the host's busybox-static and push it
#      to the daemon's registry as upstream/os-base:1 (the template's os-base
#      image stream imports it from there, as it would from any registry),
#   3. put httpd-base, app-a and app-b in a local git repository,
#   4. cascade apply -f template.yaml --param GIT_URL=file://… --param BASE_IMAGE=…,
#      wait for the three builds and the two deployments, curl both routes,
#   5. commit a fix to httpd-base, cascade start-build httpd-base, show the
#      cascade (events, impact) and wait until both routes serve the fix,
#   6. cascade delete all -l app=app-a: app-a is gone, app-b still serves.
# The daemon keeps running (stop it with `kill $(pgrep -f 'cascade serve')`).
#
# Usage: examples/image-stream/run.sh      (as root; after bash .ci/setup)
# Environment: CASCADE (the binary, default build/cascade), CASCADE_HOST
# (default http://127.0.0.1:5000), CASCADE_ROOT (the state root of a daemon it
# starts, default /var/lib/cascade), ROUTER_PORT (the routes' shared port of a
# daemon it starts, default 8080), WORK (the git repository and scratch files,
# default a new temporary directory), TIMEOUT (seconds per wait, default 600).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cascade=${CASCADE:-$repo/build/cascade}
export CASCADE_HOST=${CASCADE_HOST:-http://127.0.0.1:5000}
address=${CASCADE_HOST#http://}
root=${CASCADE_ROOT:-/var/lib/cascade}
router_port=${ROUTER_PORT:-8080}
timeout=${TIMEOUT:-600}
work=${WORK:-$(mktemp -d /tmp/cascade-image-stream.XXXXXX)}

step() { printf '\n== %s\n' "$*"; }
# wait_for DESCRIPTION COMMAND…: runs COMMAND every 0.5 s until it succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + timeout))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "run.sh: $what: not done after ${timeout} s" >&2
      "$cascade" get builds >&2 || true
      "$cascade" get dc >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}
route() { curl -fsS --max-time 5 -H "Host: $1.localhost" "http://127.0.0.1:$router_port$2"; }
serves() { route "$1" "$2" | grep -q -- "$3"; }
build_complete() { "$cascade" get "build/$1" -o json | grep -q '"phase": *"Complete"'; }
rolled_out() { "$cascade" rollout status "$1" --timeout 5; }
tag_digest() { "$cascade" get "imagestream/$1" -o json | grep -o 'sha256:[0-9a-f]\{64\}' | head -1; }
last_event() { "$cascade" events -o json | grep -o '"id": *[0-9]*' | tail -1 | grep -o '[0-9]*$' || echo 0; }

step "the daemon at $CASCADE_HOST"
if curl -fs --max-time 2 "$CASCADE_HOST/v2/" >/dev/null; then
  echo "a daemon answers at $CASCADE_HOST"
else
  mkdir -p "$root"
  setsid "$cascade" serve --root "$root" --listen "$address" \
    --router-listen "127.0.0.1:$router_port" >>"$root/daemon.log" 2>&1 </dev/null &
  wait_for "the daemon answering" curl -fs --max-time 2 "$CASCADE_HOST/v2/"
  echo "started cascade serve (state root $root, log $root/daemon.log)"
fi

step "the upstream OS base: busybox-static, pushed as $address/upstream/os-base:1"
mkdir -p "$work/os-base"
cp /bin/busybox "$here/os-base/Dockerfile" "$work/os-base/"
"$cascade" build -t upstream/os-base:1 "$work/os-base" | tail -1

step "the sources in a git repository: $work/src"
rm -rf "$work/src"
mkdir -p "$work/src"
cp -r "$here/httpd-base" "$here/app-a" "$here/app-b" "$work/src/"
git_() { git -C "$work/src" -c user.name=cascade -c user.email=cascade@localhost "$@"; }
git_ init -q -b main
git_ add -A
git_ commit -q -m "httpd-base, app-a and app-b"

step "cascade apply -f template.yaml"
"$cascade" apply -f "$here/template.yaml" \
  --param "GIT_URL=file://$work/src" \
  --param "BASE_IMAGE=$address/upstream/os-base:1"

step "three builds and two deployments"
for b in httpd-base-1 app-a-1 app-b-1; do
  wait_for "build $b" build_complete "$b"
done
for d in app-a app-b; do
  wait_for "the rollout of $d" rolled_out "$d"
done
"$cascade" get builds
"$cascade" get dc
"$cascade" get routes
wait_for "app-a's route" serves app-a / '<h1>app-a</h1>'
wait_for "app-b's route" serves app-b / '<h1>app-b</h1>'
route app-a /
route app-b /cgi-bin/base-version

step "a critical fix lands in httpd-base: commit it and start its build"
before_a=$(tag_digest app-a)
before_b=$(tag_digest app-b)
since=$(last_event)
sed -i 's/HTTPD_BASE_RELEASE=1.0/HTTPD_BASE_RELEASE=1.1/' "$work/src/httpd-base/Dockerfile"
git_ commit -q -am "httpd-base 1.1: the critical fix"
"$cascade" start-build httpd-base --follow | tail -3
wait_for "app-a on the fix" serves app-a /cgi-bin/base-version 'httpd-base 1.1'
wait_for "app-b on the fix" serves app-b /cgi-bin/base-version 'httpd-base 1.1'
for d in app-a app-b; do
  wait_for "the rollout of $d" rolled_out "$d"
done

step "the cascade, as it happened"
"$cascade" events --since "$since"
step "cascade impact httpd-base:latest"
"$cascade" impact httpd-base:latest
after_a=$(tag_digest app-a)
after_b=$(tag_digest app-b)
echo "app-a:latest ${before_a:7:12} -> ${after_a:7:12}"
echo "app-b:latest ${before_b:7:12} -> ${after_b:7:12}"
if [ "$before_a" = "$after_a" ] || [ "$before_b" = "$after_b" ]; then
  echo "run.sh: the applications were not rebuilt on the fix" >&2
  exit 1
fi
route app-a /cgi-bin/base-version
route app-b /cgi-bin/base-version

step "cascade delete all -l app=app-a"
"$cascade" delete all -l app=app-a
wait_for "app-a's route gone" bash -c "! curl -fs --max-time 5 -H 'Host: app-a.localhost' http://127.0.0.1:$router_port/"
serves app-b / '<h1>app-b</h1>'
"$cascade" get all
echo
echo "app-a is gone; app-b still serves: curl -H 'Host: app-b.localhost' http://127.0.0.1:$router_port/"
