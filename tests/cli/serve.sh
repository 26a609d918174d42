#!/bin/sh
# serve.sh: capsnet serve's API against a server this test starts on a free loopback port:
# good requests, bad ones (truncated JSON, 783 pixels, NaN, out-of-range values, huge
# bodies, wrong methods, unknown and hostile paths), concurrent requests; the server must
# answer each correctly and stay alive. Then a short wrk load (where wrk is installed) and
# the page in headless Chromium (where it and tests/browser/node_modules are).
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
here=$(cd "$(dirname "$0")/../.." && pwd)
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
model="$work/serve.caps"
"$capsnet" train --data "$data" --out "$model" --limit 600 --test-limit 100 --epochs 1 \
    --batch 50 $tiny --seed 4 --quiet > /dev/null 2>&1

start_serve "$work/serve.out" "$work/serve.err" --model "$model" --data "$data"
assert "server prints its URL" [ -n "$url" ]
assert "server starts without a word on stderr" [ ! -s "$work/serve.err" ]

# http METHOD PATH [BODY-FILE]: prints "CODE BODY" on one line (the first 2000 bytes).
http() {
    if [ -n "${3:-}" ]; then
        code=$(curl -s -o "$work/body" -X "$1" --data-binary "@$3" -H 'Content-Type: application/json' \
            -w '%{http_code}' "$url$2")
    else
        code=$(curl -s -o "$work/body" -X "$1" -w '%{http_code}' "$url$2")
    fi
    printf '%s %s\n' "$code" "$(head -c 2000 "$work/body" | tr '\n' ' ')"
}
pixels() { # N VALUE: a JSON array of N copies of VALUE
    awk -v n="$1" -v v="$2" 'BEGIN { printf "["; for (i = 0; i < n; i++) printf "%s%s", (i ? "," : ""), v; printf "]" }'
}
printf '{"pixels": %s}' "$(pixels 784 0.25)" > "$work/good.json"
printf '{"pixels": %s}' "$(pixels 783 0.25)" > "$work/short.json"
printf '{"pixels": %s}' "$(pixels 784 1.5)" > "$work/range.json"
printf '{"pixels": [NaN%s]}' "$(pixels 783 0 | sed 's/^\[/,/; s/\]$//')" > "$work/nan.json"
printf '{"pixels": [1e999%s]}' "$(pixels 783 0 | sed 's/^\[/,/; s/\]$//')" > "$work/inf.json"
head -c 3000 "$work/good.json" > "$work/truncated.json"
printf '{"class": 3, "capsule": %s}' "$(pixels 16 0.1)" > "$work/decode.json"
printf '{"class": 10, "capsule": %s}' "$(pixels 16 0.1)" > "$work/decode_class.json"
printf '{"class": 3, "capsule": %s}' "$(pixels 15 0.1)" > "$work/decode_short.json"
printf '{"pixels": %s, "range": 0.2, "steps": 5}' "$(pixels 784 0.25)" > "$work/perturb.json"
printf '{"pixels": %s, "steps": 99}' "$(pixels 784 0.25)" > "$work/perturb_steps.json"
head -c 2000000 /dev/zero | tr '\0' ' ' > "$work/huge.json"
printf '[1, 2, 3]' > "$work/array.json"
: > "$work/empty.json"

check "page" 0 "^200 " -- http GET /
check "page is HTML" 0 "<html" -- http GET /
check "info" 0 '^200 .*"classes":10,"image_size":28,"digit_dim":16,"test_images":10000' -- http GET /api/info
check "test image 0 is a 7" 0 '^200 \{"index":0,"label":7,"pixels":\[' -- http GET /api/test/0
check "classify" 0 '^200 .*"class":[0-9],"lengths":\[([0-9.e-]+,){9}[0-9.e-]+\],"capsules":\[\[.*"reconstruction":\[' -- http POST /api/classify "$work/good.json"
check "decode" 0 '^200 \{"reconstruction":\[' -- http POST /api/decode "$work/decode.json"
check "perturb" 0 '^200 .*"deltas":\[-0.2,-0.1,0,0.1,0.2\],"rows":16,"cols":5,"size":28,"images":"[A-Za-z0-9+/]{1000}' -- http POST /api/perturb "$work/perturb.json"

check "truncated JSON -> 400" 0 '^400 .*not a JSON object' -- http POST /api/classify "$work/truncated.json"
check "783 pixels -> 400" 0 '^400 .*has 783 values \(expected 784\)' -- http POST /api/classify "$work/short.json"
check "NaN -> 400" 0 '^400 ' -- http POST /api/classify "$work/nan.json"
check "infinity -> 400" 0 '^400 .*must be a number in \[0, 1\]' -- http POST /api/classify "$work/inf.json"
check "pixel 1.5 -> 400" 0 '^400 .*must be a number in \[0, 1\]' -- http POST /api/classify "$work/range.json"
check "JSON array body -> 400" 0 '^400 .*not a JSON object' -- http POST /api/classify "$work/array.json"
check "empty body -> 400" 0 '^400 .*body is empty' -- http POST /api/classify "$work/empty.json"
check "2 MB body -> 413" 0 '^413 .*too large' -- http POST /api/classify "$work/huge.json"
check "decode class 10 -> 400" 0 '^400 .*integer in \[0, 9\]' -- http POST /api/decode "$work/decode_class.json"
check "decode 15 dims -> 400" 0 '^400 .*has 15 values' -- http POST /api/decode "$work/decode_short.json"
check "perturb 99 steps -> 400" 0 '^400 .*integer in \[1, 21\]' -- http POST /api/perturb "$work/perturb_steps.json"
check "GET classify -> 405" 0 '^405 ' -- http GET /api/classify
check "DELETE page -> 405" 0 '^405 ' -- http DELETE /
check "POST info -> 405" 0 '^405 ' -- http POST /api/info "$work/good.json"
check "allow header" 0 '^Allow: POST' -- sh -c "curl -s -D - -o /dev/null -X GET '$url/api/decode' | tr -d '\r'"
check "unknown path -> 404" 0 '^404 ' -- http GET /api/nothing
check "test image past the end -> 404" 0 '^404 .*expected 0\.\.9999' -- http GET /api/test/10000
check "test image -1 -> 404" 0 '^404 ' -- http GET /api/test/-1
check "no files from disk" 0 '^404 ' -- http GET /../../../../etc/passwd
check "no files from disk, encoded" 0 '^404 ' -- http GET /%2e%2e/%2e%2e/etc/passwd
check "no source files" 0 '^404 ' -- http GET /tools/cmd_serve.c

# Twenty requests at once: every one answered 200.
for k in $(seq 20); do
    (curl -s -o /dev/null -w '%{http_code}\n' -X POST --data-binary "@$work/good.json" "$url/api/classify" > "$work/c$k") &
done
wait_codes=0
for k in $(seq 50); do
    [ "$(cat "$work"/c* 2>/dev/null | wc -l)" -ge 20 ] && break
    sleep 0.2
done
check "20 concurrent classifications all 200" 0 "^20$" -- sh -c "cat '$work'/c* | grep -c '^200$'"
check "alive after all of it" 0 '^200 .*"classes":10' -- http GET /api/info

if command -v wrk > /dev/null 2>&1; then
    sed "s|BODY_FILE|$work/good.json|" "$here/bench/serve_load.lua" > "$work/load.lua"
    wrk -t2 -c8 -d3s --latency -s "$work/load.lua" "$url/api/classify" > "$work/wrk.out" 2>&1
    check "wrk: requests answered" 0 "Requests/sec" -- cat "$work/wrk.out"
    check "wrk: no errors or non-2xx answers" 1 "" -- grep -Eq "Non-2xx|Socket errors" "$work/wrk.out"
else
    echo "  note: wrk not installed: load check skipped (apt-get install wrk)"
fi

if [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ -d "$here/tests/browser/node_modules/playwright-core" ] &&
   [ -f "$here/tests/browser/serve_test.mjs" ]; then
    # The screenshots outlive the test (desktop and phone width), for a person to look at.
    shots=${CAPS_SCREENSHOTS:-$here/build}
    mkdir -p "$shots"
    check "page in Chromium: draw, classify, turn a dimension" 0 "" -- \
        node "$here/tests/browser/serve_test.mjs" "$url/" "$shots/serve.png"
    echo "  screenshots: $shots/serve.png, $shots/serve-phone.png"
    check "page loads without errors" 0 "ok" -- node "$here/tests/browser/check_page.mjs" "$url/"
else
    echo "  note: browser check skipped: needs /usr/bin/chromium and tests/browser/node_modules"
fi

kill -INT "$pid"
wait "$pid"
rc=$?
assert "Ctrl-C stops the server cleanly (status $rc)" [ "$rc" -eq 0 ]
check "serve: bad host" 2 "bad --host" -- "$capsnet" serve --model "$model" --host nowhere
check "serve: missing model" 1 "cannot open" -- "$capsnet" serve --model "$work/none.caps"
summary
