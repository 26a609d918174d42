#!/usr/bin/env bash
# fuzz/make_corpus.sh: regenerates the seed corpora in fuzz/corpus/{idx,model,cnn,image,data}.
# Not needed to fuzz (the seeds are committed); run it from the repository root after a
# format change. Needs python3 and a C compiler; model seeds are written by the library's
# own caps_model_save, so they are exactly what capsnet writes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f "$out"/idx/* "$out"/model/* "$out"/cnn/* "$out"/image/* "$out"/data/*
mkdir -p "$out"/idx "$out"/model "$out"/cnn "$out"/image "$out"/data

# ---------------------------------------------------------------- model files (C, the library)
cat > "$tmp/gen_model.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "capsnet.h"
/* Writes dir/name from a model of cfg; variant tweaks the state, log and Adam step; names,
 * when not NULL, are its class names (c.num_classes of them). */
static void save_named(const char *dir, const char *name, caps_config c, const char *log,
                       int variant, const char *const *names) {
    capsnet *m; caps_error err; caps_train_state st; char path[512];
    if (capsnet_create(&m, &c, 1, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    if (names && caps_set_class_names(m, c.num_classes, names, &err)) {
        fprintf(stderr, "%s\n", err.msg); exit(1);
    }
    capsnet_init_weights(m, 42 + (uint64_t)variant);
    caps_train_state_default(&st);
    if (variant) {
        size_t n = caps_num_params(&c);
        float *am = malloc(n * sizeof(float)), *av = malloc(n * sizeof(float));
        if (!am || !av) exit(1);
        for (size_t i = 0; i < n; i++) am[i] = 1e-3f * (float)i, av[i] = 1e-6f;
        capsnet_write(m, CAPS_ADAM_M, 0, n, am, NULL);
        capsnet_write(m, CAPS_ADAM_V, 0, n, av, NULL);
        free(am), free(av);
        capsnet_set_adam_t(m, 1234); st.epoch = 3; st.batch_in_epoch = 17; st.epoch_images = 1700;
        st.epoch_loss_sum = 12.5; st.epoch_seconds = 3.25; st.limit = 100; st.recon_weight = 0;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (caps_model_save(m, &st, log, path, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    capsnet_free(m);
}
static void save(const char *dir, const char *name, caps_config c, const char *log, int variant) {
    save_named(dir, name, c, log, variant, NULL);
}
int main(int argc, char **argv) {
    (void)argc;
    caps_config a = {6, 1, 2, 3, 1, 1, 2, 2, 1, 2, 2, 1, 2, 2, CAPS_ROUTING_DYNAMIC}; /* 234 parameters, 3 KB */
    caps_config b = {5, 2, 1, 2, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1, CAPS_ROUTING_DYNAMIC}; /* 2 channels, stride 2 */
    caps_config c = {7, 1, 2, 2, 1, 2, 2, 2, 2, 3, 2, 2, 3, 2, CAPS_ROUTING_DYNAMIC}; /* 3 classes, routing 2 */
    save(argv[1], "tiny_a_log.caps", a, "epoch,loss,train_acc,test_acc\n0,0.5,0.8,0.85\n", 0);
    save(argv[1], "tiny_a_nolog.caps", a, NULL, 0);
    save(argv[1], "tiny_a_resume.caps", a, "epoch,loss\n0,0.1\n1,0.05\n2,0.04\n", 1);
    save(argv[1], "tiny_b.caps", b, "x", 0);
    save(argv[1], "tiny_c.caps", c, NULL, 1);
    const char *names[3] = {"zero", "caf\xc3\xa9", "T-shirt/top"};
    save_named(argv[1], "tiny_c_named.caps", c, "epoch,loss\n0,0.1\n", 1, names);
    /* 400 classes, 4096 routing iterations: a 10 kB file whose routing scratch (77 MB)
     * exceeds fuzz_model's allocation limit, so the out-of-memory path stays covered. */
    caps_config w = {1, 1, 1, 1, 1, 1, 1, 1, 1, 400, 1, 4096, 1, 1, CAPS_ROUTING_DYNAMIC};
    save(argv[1], "wide_routing.caps", w, NULL, 0);
    return 0;
}
EOF
# The library as an archive, so that only what the generator uses is linked; a source
# that needs a library not installed here (e.g. cairo) is skipped.
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -Wno-unknown-pragmas -Iinclude -Isrc"
for f in src/*.c; do
    ${CC:-cc} $cflags -c "$f" -o "$tmp/$(basename "$f" .c).o" 2>/dev/null || echo "skipped $f"
done
ar rcs "$tmp/libcapsnet.a" "$tmp"/*.o
${CC:-cc} $cflags "$tmp/gen_model.c" "$tmp/libcapsnet.a" -o "$tmp/gen_model" -lpng -lz -lm
"$tmp/gen_model" "$tmp"

# ---------------------------------------------------------------- baseline CNN files (C)
cat > "$tmp/gen_cnn.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include "cnn.h"
/* Writes dir/name from a CNN of cfg, trained state or not, with a log and names or not. */
static void save(const char *dir, const char *name, caps_cnn_config c, const char *log,
                 int variant, const char *const *names) {
    caps_cnn *m; caps_error err; caps_train_state st; char path[512];
    if (caps_cnn_create(&m, &c, 1, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    if (names && caps_cnn_set_class_names(m, c.num_classes, names, &err)) {
        fprintf(stderr, "%s\n", err.msg); exit(1);
    }
    caps_cnn_init_weights(m, 7 + (uint64_t)variant);
    caps_train_state_default(&st);
    st.recon_weight = 0;
    if (variant) st.epoch = 2, st.batch_in_epoch = 5, st.epoch_images = 50, st.epoch_loss_sum = 9.5;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (caps_cnn_save(m, &st, log, path, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    caps_cnn_free(m);
}
int main(int argc, char **argv) {
    (void)argc;
    /* image, channels, conv 1-3, kernel, fc1, fc2, classes, dropout: a few hundred weights */
    caps_cnn_config a = {4, 1, 2, 2, 1, 3, 3, 2, 3, 0.5f};
    caps_cnn_config b = {5, 3, 1, 2, 1, 1, 2, 2, 2, 0.0f};
    const char *names[] = {"zero", "one", "two"};
    save(argv[1], "tiny_a.cnn", a, "epoch,train_loss\n1,0.5\n", 0, NULL);
    save(argv[1], "tiny_a_resume.cnn", a, NULL, 1, NULL);
    save(argv[1], "tiny_a_named.cnn", a, "x", 0, names);
    save(argv[1], "tiny_b.cnn", b, NULL, 1, NULL);
    return 0;
}
EOF
${CC:-cc} $cflags "$tmp/gen_cnn.c" "$tmp/libcapsnet.a" -o "$tmp/gen_cnn" -lpng -lz -lm
"$tmp/gen_cnn" "$tmp"

# ---------------------------------------------------------------- the rest (python3)
python3 - "$tmp" "$out" <<'EOF'
import gzip, struct, sys, zlib
tmp, out = sys.argv[1], sys.argv[2]
def put(kind, name, data):
    open(f"{out}/{kind}/{name}", "wb").write(data)

# Model files: the library's seeds, then damaged variants of one of them.
good = open(f"{tmp}/tiny_a_log.caps", "rb").read()
for n in ["tiny_a_log", "tiny_a_nolog", "tiny_a_resume", "tiny_b", "tiny_c", "tiny_c_named",
          "wide_routing"]:
    put("model", n, open(f"{tmp}/{n}.caps", "rb").read())
put("model", "cut_header", good[:100])
put("model", "header_only", good[:216])
put("model", "one_byte_short", good[:-1])
put("model", "trailing_byte", good + b"\0")
flip = bytearray(good); flip[500] ^= 0x40; put("model", "bad_crc", bytes(flip))
v4 = bytearray(good); v4[8] = 4; put("model", "version4", bytes(v4))
# Version 2, as capsnet wrote before models had class names: no names_bytes field, header
# 192 bytes; version 1, before routings had names: no routing field either, header 176 bytes.
v2 = bytearray(good[:208] + good[216:-4]); v2[8] = 2; v2[12:16] = struct.pack("<I", 192)
put("model", "version2", bytes(v2) + struct.pack("<I", zlib.crc32(bytes(v2))))
v1 = bytearray(good[:192] + good[216:-4]); v1[8] = 1; v1[12:16] = struct.pack("<I", 176)
put("model", "version1", bytes(v1) + struct.pack("<I", zlib.crc32(bytes(v1))))
em = bytearray(good[:-4]); em[192:208] = b"em".ljust(16, b"\0")
put("model", "unknown_routing", bytes(em) + struct.pack("<I", zlib.crc32(bytes(em))))
bigl = bytearray(good); bigl[184:192] = struct.pack("<Q", 1 << 40); put("model", "huge_log", bytes(bigl))
put("model", "not_model", b"\x89PNG\r\n\x1a\n" + good[8:64])

# Baseline CNN files: the library's seeds, damaged variants, and a capsule file among them.
cnn = open(f"{tmp}/tiny_a.cnn", "rb").read()
for n in ["tiny_a", "tiny_a_resume", "tiny_a_named", "tiny_b"]:
    put("cnn", n, open(f"{tmp}/{n}.cnn", "rb").read())
put("cnn", "cut_header", cnn[:90])
put("cnn", "one_byte_short", cnn[:-1])
flip = bytearray(cnn); flip[len(cnn) // 2] ^= 0x40; put("cnn", "bad_crc", bytes(flip))
put("cnn", "capsule_file", good)

# IDX pairs: a 2-byte big-endian split, the image file, the label file.
def idx_images(n, rows, cols, ch=None, seed=1):
    dims = [n] + ([ch] if ch else []) + [rows, cols]
    head = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + bytes((seed * 37 + k * 11) & 255 for k in range(n * (ch or 1) * rows * cols))
def idx_labels(labels):
    return bytes([0, 0, 8, 1]) + struct.pack(">I", len(labels)) + bytes(labels)
def gz(b):
    return gzip.compress(b, mtime=0)
def pair(name, im, lb):
    put("idx", name, struct.pack(">H", len(im)) + im + lb)
im, lb = idx_images(3, 4, 5), idx_labels([0, 9, 4])
pair("raw", im, lb)
pair("gz", gz(im), gz(lb))
pair("gz_images", gz(im), lb)
pair("gz_labels", im, gz(lb))
pair("mnist_28x28_gz", gz(idx_images(2, 28, 28, seed=5)), gz(idx_labels([7, 2])))
pair("rank4", idx_images(2, 2, 2, ch=3), idx_labels([1, 2]))
pair("rank4_gz", gz(idx_images(2, 2, 2, ch=3)), gz(idx_labels([1, 2])))
pair("count_mismatch", im, idx_labels([0, 1]))
pair("label_10", im, idx_labels([0, 10, 1]))
pair("short_payload", im[:-1], lb)
pair("trailing_byte", im, lb + b"\0")
pair("swapped", lb, im)
pair("header_only", im[:16], lb[:8])
pair("two_gz_members", gz(im[:30]) + gz(im[30:]), gz(lb))
bad = bytearray(gz(im)); bad[len(bad) // 2] ^= 0xFF; pair("corrupt_gz", bytes(bad), lb)
pair("gz_no_trailer", gz(im)[:-8], gz(lb))
pair("empty_labels", im, b"")
# Over 1 MiB of pixels (one 1025 x 1024 image of zeros, 1 kB compressed): the payload buffer
# starts at 1 MiB and must grow.
big = bytes([0, 0, 8, 3]) + struct.pack(">3I", 1, 1025, 1024) + bytes(1025 * 1024)
pair("big_gz", gz(big), gz(idx_labels([3])))

# Images: byte 0 picks the second size, h = 1 + (b >> 4), w = 1 + (b & 15); then the file.
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
def pack_row(samples, depth):
    if depth == 8: return bytes(samples)
    if depth == 16: return b"".join(struct.pack(">H", s) for s in samples)
    bits = "".join(format(s, f"0{depth}b") for s in samples)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
def filt(rows, bpp, ftype):
    """PNG filter types 0-4 applied by cycling from ftype; rows: packed bytes."""
    out, prev = b"", bytes(len(rows[0]) if rows else 0)
    for y, r in enumerate(rows):
        t = (ftype + y) % 5 if ftype is not None else 0
        f = bytearray()
        for i, x in enumerate(r):
            a = r[i - bpp] if i >= bpp else 0
            b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
            if t == 0: p = 0
            elif t == 1: p = a
            elif t == 2: p = b
            elif t == 3: p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            f.append((x - p) & 255)
        out += bytes([t]) + bytes(f); prev = r
    return out
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
def png(w, h, ctype, depth, pix, interlace=0, ftype=None, extra=b"", plte=None, trns=None, post=b""):
    """pix(x, y) -> tuple of samples for the colour type."""
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bpp = max(1, chans * depth // 8)
    def raw(xs, ys):
        rows = [pack_row([s for x in xs for s in pix(x, y)], depth) for y in ys]
        return filt(rows, bpp, ftype) if xs and ys else b""
    if interlace:
        data = b"".join(raw(range(x0, w, dx), range(y0, h, dy)) for x0, y0, dx, dy in ADAM7)
    else:
        data = raw(range(w), range(h))
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    s += extra
    if plte: s += chunk(b"PLTE", plte)
    if trns: s += chunk(b"tRNS", trns)
    return s + chunk(b"IDAT", zlib.compress(data, 9)) + post + chunk(b"IEND", b"")
g8 = lambda x, y: ((x * 9 + y * 5) & 255,)
put("image", "png_gray8", b"\0" + png(28, 28, 0, 8, g8))
put("image", "png_gray8_filters", b"\0" + png(28, 28, 0, 8, g8, ftype=0))
put("image", "png_gray16", b"\0" + png(28, 28, 0, 16, lambda x, y: ((x * 2341 + y * 977) & 65535,), ftype=1))
put("image", "png_gray1", b"\0" + png(28, 28, 0, 1, lambda x, y: ((x ^ y) & 1,)))
put("image", "png_gray2_trns", b"\0" + png(28, 28, 0, 2, lambda x, y: ((x + y) & 3,), trns=b"\0\1"))
put("image", "png_gray4", b"\0" + png(28, 28, 0, 4, lambda x, y: ((x * y) & 15,), ftype=3))
put("image", "png_palette", b"\0" + png(28, 28, 3, 8, lambda x, y: ((x + y) % 4,), plte=bytes(range(12)) , ftype=4))
put("image", "png_palette4_trns", b"\0" + png(28, 28, 3, 4, lambda x, y: ((x * 3 + y) % 5,), plte=bytes(range(0, 150, 10)), trns=b"\x00\x80\xff"))
put("image", "png_rgb", b"\0" + png(28, 28, 2, 8, lambda x, y: (x * 9, y * 9, (x + y) * 4), ftype=2))
put("image", "png_rgb16_gama", b"\0" + png(28, 28, 2, 16, lambda x, y: (x * 2000, y * 2000, 5), extra=chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))))
put("image", "png_rgba", b"\0" + png(28, 28, 6, 8, lambda x, y: (200, x * 9, y * 9, (x * y) & 255), extra=chunk(b"sRGB", b"\0")))
put("image", "png_gray_alpha16", b"\0" + png(28, 28, 4, 16, lambda x, y: (x * 2000, 65535 - y * 2000)))
put("image", "png_interlaced", b"\0" + png(28, 28, 0, 8, g8, interlace=1, ftype=2))
put("image", "png_text_chunks", b"\0" + png(28, 28, 0, 8, g8, extra=chunk(b"tEXt", b"Comment\0seed") + chunk(b"zTXt", b"Title\0\0" + zlib.compress(b"capsnet " * 20)), post=chunk(b"tIME", bytes(7))))
put("image", "png_7x5_gray", bytes([0x64]) + png(5, 7, 0, 8, g8))
put("image", "png_16x16_rgb_interlaced", b"\xff" + png(16, 16, 2, 8, lambda x, y: (x * 16, y * 16, 128), interlace=1, ftype=4))
put("image", "png_3x2_palette1", bytes([0x12]) + png(3, 2, 3, 1, lambda x, y: ((x + y) & 1,), plte=b"\0\0\0\xff\xff\xff"))
put("image", "png_27x28", b"\0" + png(27, 28, 0, 8, g8))
put("image", "png_truncated", b"\0" + png(28, 28, 0, 8, g8)[:60])
bad = bytearray(png(28, 28, 0, 8, g8)); bad[-13] ^= 1; put("image", "png_bad_idat_crc", b"\0" + bytes(bad))
put("image", "png_no_iend", b"\0" + png(28, 28, 0, 8, g8)[:-12])
def pgm(magic, w, h, maxval, vals, head_sep=" ", comment=b""):
    head = f"{magic}{head_sep}{w} {h}\n".encode() + comment + f"{maxval}\n".encode()
    if magic == "P2":
        return head + "\n".join(" ".join(str(v) for v in vals[r * w:(r + 1) * w]) for r in range(h)).encode() + b"\n"
    return head + b"".join(struct.pack(">H" if maxval > 255 else "B", v) for v in vals)
v8 = [(k * 7) & 255 for k in range(784)]
put("image", "p5_28x28", b"\0" + pgm("P5", 28, 28, 255, v8))
put("image", "p5_16bit", b"\0" + pgm("P5", 28, 28, 65535, [k * 83 for k in range(784)]))
put("image", "p5_comments", b"\0" + pgm("P5", 28, 28, 200, [v % 201 for v in v8], head_sep="\n# made by make_corpus.sh\n", comment=b"# maxval next\n"))
put("image", "p2_28x28", b"\0" + pgm("P2", 28, 28, 15, [v % 16 for v in v8]))
put("image", "p2_4x3", bytes([0x23]) + pgm("P2", 4, 3, 1000, [0, 1, 999, 1000, 5, 6, 7, 8, 9, 10, 11, 12]))
put("image", "p5_4x3_hash_after_maxval", bytes([0x23]) + b"P5 4 3 255#c\n" + bytes(range(12)))
put("image", "p5_truncated", b"\0" + pgm("P5", 28, 28, 255, v8)[:-1])
put("image", "p2_over_maxval", bytes([0x23]) + pgm("P2", 4, 3, 9, [0] * 11 + [10]))
put("image", "pgm_huge_header", b"\0" + b"P5 99999999999999999999 28 255\n")
put("image", "jpeg", b"\0\xff\xd8\xff\xe0\0\x10JFIF\0")
put("image", "empty", b"\0")
# Data sets (fuzz_data): byte 0 picks the reader, 0 CIFAR-10 batch, 1 names file, 2 image.
rec = lambda label, k: bytes([label]) + bytes(((i * 7 + k * 31) & 255) for i in range(3072))
put("data", "cifar_2_records", b"\0" + rec(3, 0) + rec(9, 1))
put("data", "cifar_label_10", b"\0" + rec(10, 0))
put("data", "cifar_short", b"\0" + rec(1, 0)[:-1])
put("data", "names_fashion", b"\1" + "T-shirt/top\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot\n".encode())
put("data", "names_cifar_meta", b"\1airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")
put("data", "names_crlf_utf8", b"\1ch\xc3\xa2teau\r\nstra\xc3\x9fe\r\n")
put("data", "names_blank_middle", b"\1cat\n\ndog\n")
put("data", "names_control", b"\1cat\x01\ndog\n")
put("data", "names_long", b"\1" + b"x" * 200 + b"\n")
def ppm(magic, w, h, maxval, vals):
    head = f"{magic}\n{w} {h}\n{maxval}\n".encode()
    if magic == "P3":
        return head + " ".join(str(v) for v in vals).encode() + b"\n"
    return head + b"".join(struct.pack(">H" if maxval > 255 else "B", v) for v in vals)
put("data", "ppm_p6_5x4", b"\2" + ppm("P6", 5, 4, 255, [(k * 13) & 255 for k in range(60)]))
put("data", "ppm_p6_16bit", b"\2" + ppm("P6", 3, 2, 65535, [k * 3000 for k in range(18)]))
put("data", "ppm_p3_2x2", b"\2" + ppm("P3", 2, 2, 7, [k % 8 for k in range(12)]))
put("data", "ppm_truncated", b"\2" + ppm("P6", 5, 4, 255, [1] * 60)[:-3])
put("data", "png_rgba_6x3", b"\2" + png(6, 3, 6, 8, lambda x, y: (x * 40, y * 80, 7, 128)))
put("data", "pgm_3x3", b"\2" + pgm("P5", 3, 3, 255, list(range(9))))
EOF
ls "$out"/* | wc -l
du -sh "$out"
