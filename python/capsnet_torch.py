#!/usr/bin/python3
"""capsnet_torch.py: capsnet model files in PyTorch, and from there in ONNX.

A single file that needs only PyTorch (Debian: apt-get install python3-torch) and, for
ONNX export, the onnx package (python3-onnx) to check what it wrote:

    import capsnet_torch
    net = capsnet_torch.load("mnist.caps")          # an nn.Module, float32
    lengths, recon = net(images)                    # images [B][C][H][W] in [0, 1]
    capsnet_torch.save(net, "tuned.caps")           # a model file capsnet reads
    capsnet_torch.export_onnx(net, "mnist.onnx")    # inputs "image", outputs "lengths",
                                                    # "reconstruction", dynamic batch

and a command line:

    /usr/bin/python3 python/capsnet_torch.py onnx MODEL.caps OUT.onnx
    /usr/bin/python3 python/capsnet_torch.py lengths MODEL.caps --data DIR --count N --out F.csv
    /usr/bin/python3 python/capsnet_torch.py roundtrip IN.caps OUT.caps

The network is the paper's (Sabour, Frosst & Hinton, "Dynamic Routing Between Capsules",
NIPS 2017) with the C library's layouts and arithmetic, so that a model computes the same
capsule lengths here as in capsnet (to float32 rounding):

    x [B][C][S][S] -> conv1: Conv2d(C, C1, K1, stride ST1), no padding, ReLU
      -> primary_caps: Conv2d(C1, T*D, K2, stride ST2), no padding, no ReLU, read as
         I = T*G*G capsules of D: capsule i = t*G*G + y*G + x, channel = t*D + d; squash (eq. 1)
      -> digit_caps: u_hat[b,i,j,e] = sum_d W[i,j,e,d] u[b,i,d], W [I][J][E][D] (eq. 2),
         no bias; routing by agreement, Procedure 1, R rounds (eq. 3: softmax over the J
         parents of each child), squash (eq. 1) -> v [B][J][E]
      -> lengths |v_j| [B][J] (the class scores)
      -> decoder on v masked to one capsule (the label if given, else the longest):
         Linear(J*E, H1) ReLU Linear(H1, H2) ReLU Linear(H2, C*S*S) Sigmoid -> [B][C*S*S]

    squash(s) = s |s| / (1 + |s|^2), with no epsilon (src/squash.c says why).

Parameter names (state_dict keys, also the tensor names of a safetensors export), in the
order of the 11 tensors of a model file (docs/model-format.md): conv1.weight, conv1.bias,
primary_caps.weight, primary_caps.bias, digit_caps.weight, decoder.0.weight, decoder.0.bias,
decoder.2.weight, decoder.2.bias, decoder.4.weight, decoder.4.bias.

A model file also holds what PyTorch's module has no place for: the training recipe and
progress, both Adam moments, the Adam step count and the training log. `load` keeps them
on the module as `net.capsnet_file` (a CapsFile), and `save` writes them back with the
module's parameters, so load -> save without training gives the same bytes (in the version
the file was: 1, 2 or 3), and capsnet can resume such a file. Training in PyTorch changes
only the parameters: the moments and the step count stay those of the file (set them on
net.capsnet_file to change them).

Class names: `net.class_names` is the list of the classes' names, class 0 first ("T-shirt/top",
"Trouser", ...), or None when the model has none (version 1 and 2 files never have names).
Set it (a list of num_classes strings, each 1 to 127 bytes in UTF-8 without control
characters, as capsnet's caps_set_class_names takes them) or clear it (None) before `save`;
a module with names is saved as version 3 whatever the version it was read from. `export_onnx`
puts them in the ONNX model's metadata_props as "class_names", a JSON array of strings.
"""
import argparse
import gzip
import json
import math
import os
import stat
import struct
import sys
import zlib

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import numpy as np  # a dependency of python3-torch
except ImportError as e:  # pragma: no cover - depends on the machine
    if __name__ == "__main__":
        sys.stderr.write("capsnet_torch.py: error: PyTorch is not installed (%s); on Debian "
                         "or Ubuntu: apt-get install python3-torch\n" % e)
        sys.exit(1)
    raise ImportError("capsnet_torch needs PyTorch (Debian: apt-get install python3-torch): %s"
                      % e) from e

# ---------------------------------------------------------------------------- file format

MAGIC = b"CAPSNET\0"
VERSION = 3  # the version of new files; load reads 1, 2 and 3, save writes the one it read
# The header of each version, the 16 bytes of magic, version and header_bytes included
# (the field header_bytes holds these minus 16).
HEADER_BYTES = {1: 192, 2: 208, 3: 216}
PREAMBLE_BYTES = 16
ROUTING_BYTES = 16
CRC_BYTES = 4
MAX_LOG_BYTES = 16 << 20
ROUTINGS = ("dynamic",)
# A class name: 1 to CLASS_NAME_MAX - 1 bytes (capsnet.h's CAPS_CLASS_NAME_MAX counts the
# NUL); in a file each is followed by "\n", so a names block holds at most num_classes x 128.
CLASS_NAME_MAX = 128

# caps_config's numeric fields, in declaration order: the order in the file.
CONFIG_FIELDS = ("image_size", "in_channels", "conv1_channels", "conv1_kernel", "conv1_stride",
                 "primary_types", "primary_dim", "primary_kernel", "primary_stride",
                 "num_classes", "digit_dim", "routing_iters", "decoder_hidden1",
                 "decoder_hidden2")
# The paper's MNIST network (caps_config_mnist).
MNIST_CONFIG = dict(image_size=28, in_channels=1, conv1_channels=256, conv1_kernel=9,
                    conv1_stride=1, primary_types=32, primary_dim=8, primary_kernel=9,
                    primary_stride=2, num_classes=10, digit_dim=16, routing_iters=3,
                    decoder_hidden1=512, decoder_hidden2=1024, routing="dynamic")
# The limits of caps_config_check (src/config.c): every field 1..4096, the parameters and
# the activations of one image below 2^31.
MAX_DIM = 4096
MAX_ELEMS = float((1 << 31) - 1)

# The header after the preamble, field by field: (name, struct code). Version 1 lacks the
# routing field, version 2 the names_bytes field. "<" = little-endian, no padding: the offsets
# of docs/model-format.md.
_STATE_FIELDS = (("lr", "f"), ("lr_decay", "f"), ("beta1", "f"), ("beta2", "f"),
                 ("adam_eps", "f"), ("recon_weight", "f"), ("batch", "i"), ("max_shift", "i"),
                 ("limit", "i"), ("seed", "Q"), ("epoch", "i"), ("batch_in_epoch", "q"),
                 ("adam_t", "q"), ("epoch_loss_sum", "d"), ("epoch_margin_sum", "d"),
                 ("epoch_recon_sum", "d"), ("epoch_seconds", "d"), ("epoch_images", "q"))
_HEADER_V1 = struct.Struct("<8sII14i" + "".join(c for _, c in _STATE_FIELDS) + "QQ")
_HEADER_V2 = struct.Struct(_HEADER_V1.format + "16s")
_HEADER_V3 = struct.Struct(_HEADER_V2.format + "Q")
_HEADERS = {1: _HEADER_V1, 2: _HEADER_V2, 3: _HEADER_V3}
assert all(_HEADERS[v].size == HEADER_BYTES[v] for v in HEADER_BYTES)

# The training state of a model that never trained in capsnet: capsnet train's defaults.
DEFAULT_STATE = dict(lr=0.001, lr_decay=0.9, beta1=0.9, beta2=0.999, adam_eps=1e-8,
                     recon_weight=0.0005, batch=100, max_shift=2, limit=0, seed=1, epoch=0,
                     batch_in_epoch=0, adam_t=0, epoch_loss_sum=0.0, epoch_margin_sum=0.0,
                     epoch_recon_sum=0.0, epoch_seconds=0.0, epoch_images=0)

# The parameter tensors in file order, by state_dict key.
PARAM_NAMES = ("conv1.weight", "conv1.bias", "primary_caps.weight", "primary_caps.bias",
               "digit_caps.weight", "decoder.0.weight", "decoder.0.bias", "decoder.2.weight",
               "decoder.2.bias", "decoder.4.weight", "decoder.4.bias")

# Initial W_ij ~ N(0, W_INIT_STD^2), as capsnet_init_weights (src/capsnet.c); the
# convolutions and the decoder start with PyTorch's defaults, as there.
W_INIT_STD = 0.03
# Margin loss (eq. 4).
M_PLUS, M_MINUS, LAMBDA = 0.9, 0.1, 0.5


def _f32(x):
    """x rounded to float32, as the file stores it (so that a fresh state compares equal)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _escape(b):
    """Bytes of a file as text for a message: printable ASCII as is, the rest as \\xNN."""
    return "".join(chr(c) if 0x20 <= c < 0x7F and c not in b'"\\' else "\\x%02x" % c
                   for c in b)


def derived_shapes(config):
    """The shapes a configuration implies (src/config.c): Conv1 side S1, grid G, capsules
    I = T*G*G, pixels P = C*S*S."""
    c = config
    s1 = (c["image_size"] - c["conv1_kernel"]) // c["conv1_stride"] + 1
    g = (s1 - c["primary_kernel"]) // c["primary_stride"] + 1
    return dict(S1=s1, G=g, I=c["primary_types"] * g * g,
                P=c["in_channels"] * c["image_size"] ** 2)


def param_shapes(config):
    """The 11 parameter shapes in file order (docs/model-format.md), PyTorch layouts."""
    c, d = config, derived_shapes(config)
    C, C1, K1 = c["in_channels"], c["conv1_channels"], c["conv1_kernel"]
    TD, K2 = c["primary_types"] * c["primary_dim"], c["primary_kernel"]
    J, E, H1, H2 = c["num_classes"], c["digit_dim"], c["decoder_hidden1"], c["decoder_hidden2"]
    return [(C1, C, K1, K1), (C1,), (TD, C1, K2, K2), (TD,), (d["I"], J, E, c["primary_dim"]),
            (H1, J * E), (H1,), (H2, H1), (H2,), (d["P"], H2), (d["P"],)]


def num_params(config):
    n = 0
    for shape in param_shapes(config):
        k = 1
        for s in shape:
            k *= s
        n += k
    return n


def check_config(config):
    """None when capsnet accepts config, else caps_config_check's message (src/config.c)."""
    for name in CONFIG_FIELDS:
        v = config.get(name)
        if not isinstance(v, int) or isinstance(v, bool):
            return "config: %s missing or not an integer (got %r)" % (name, v)
        if not 1 <= v <= MAX_DIM:
            return "config: %s out of range (expected 1..%d, got %d)" % (name, MAX_DIM, v)
    routing = config.get("routing", "dynamic")
    if routing not in ROUTINGS:
        return "config: unknown routing (expected %s, got %r)" % (" or ".join(ROUTINGS), routing)
    c = config
    if c["conv1_kernel"] > c["image_size"]:
        return ("config: conv1_kernel larger than the image (expected <= %d, got %d)"
                % (c["image_size"], c["conv1_kernel"]))
    s1 = derived_shapes(c)["S1"]
    if c["primary_kernel"] > s1:
        return ("config: primary_kernel larger than the Conv1 output (expected <= %d, got %d)"
                % (s1, c["primary_kernel"]))
    if c["num_classes"] < 2:
        return "config: num_classes too small (expected >= 2, got %d)" % c["num_classes"]
    d = derived_shapes(c)
    if d["I"] > MAX_ELEMS or d["P"] > MAX_ELEMS:
        return ("config: network too large (expected at most %.0f capsules and pixels, "
                "got %.3g and %.3g)" % (MAX_ELEMS, d["I"], d["P"]))
    C, K1, C1, K2 = c["in_channels"], c["conv1_kernel"], c["conv1_channels"], c["primary_kernel"]
    J, E, R, G = c["num_classes"], c["digit_dim"], c["routing_iters"], d["G"]
    params = float(num_params(c))
    acts = (C1 * s1 * s1 + C * K1 * K1 * s1 * s1 + C1 * K2 * K2 * G * G + d["I"] * J * E
            + R * d["I"] * J)
    if params > MAX_ELEMS or acts > MAX_ELEMS:
        return ("config: network too large (expected at most %.0f parameters and activations "
                "per image, got %.3g and %.3g)" % (MAX_ELEMS, params, float(acts)))
    return None


def check_state(state):
    """None when capsnet accepts the training state, else the message (check_state in
    src/checkpoint.c): the same rules on load and on save, so we never write a file that
    capsnet would refuse."""
    s = state

    def bad(field, expected, got):
        return "training state: %s out of range (expected %s, got %s)" % (field, expected, got)

    for f in ("lr", "lr_decay"):
        if not (math.isfinite(s[f]) and s[f] > 0):
            return bad(f, "> 0", "%g" % s[f])
    for f in ("beta1", "beta2"):
        if not 0 <= s[f] < 1:
            return bad(f, "0 <= %s < 1" % f, "%g" % s[f])
    for f in ("adam_eps", "recon_weight", "epoch_loss_sum", "epoch_margin_sum",
              "epoch_recon_sum", "epoch_seconds"):
        if not (math.isfinite(s[f]) and s[f] >= 0):
            return bad(f, ">= 0", "%g" % s[f])
    if s["batch"] < 1:
        return bad("batch", ">= 1", s["batch"])
    for f in ("max_shift", "limit", "epoch", "batch_in_epoch", "adam_t", "epoch_images"):
        if s[f] < 0:
            return bad(f, ">= 0", s[f])
    return None


def _name_bytes(name):
    """A class name as the file holds it: UTF-8, with the bytes of a name read from a file
    that were not UTF-8 given back as they were (surrogateescape)."""
    return name.encode("utf-8", "surrogateescape")


def check_name(raw):
    """None when raw (bytes) is a class name, else what is wrong, as capsnet says it
    (caps_class_name_problem, src/class_names.c)."""
    if not raw:
        return "empty name (expected 1 to %d bytes)" % (CLASS_NAME_MAX - 1)
    if len(raw) > CLASS_NAME_MAX - 1:
        return "name too long (expected at most %d bytes, got %d)" % (CLASS_NAME_MAX - 1, len(raw))
    for k, c in enumerate(raw):
        if c < 0x20 or c == 0x7F:
            return ("control character 0x%02x at byte %d (expected none: no byte below 0x20, "
                    "no 0x7f)" % (c, k + 1))
    return None


def check_class_names(names, num_classes):
    """None when names (a list of str, or None for none) can be a model's class names, else
    the message (caps_set_class_names's rules: one per class, each a name)."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or len(names) != num_classes:
        return ("class names: wrong count (expected %d, one per class, or None for none, got %s)"
                % (num_classes, len(names) if not isinstance(names, (str, bytes)) else "a string"))
    for k, name in enumerate(names):
        if not isinstance(name, str):
            return "class %d: not a string (got %r)" % (k, name)
        try:
            problem = check_name(_name_bytes(name))
        except UnicodeEncodeError as e:
            problem = "not encodable as UTF-8 (%s)" % e.reason
        if problem:
            return "class %d: %s" % (k, problem)
    return None


class CapsFile:
    """Everything of a model file besides the parameters: the version it was read from, the
    configuration (14 fields and the routing name), the training state (recipe, progress,
    adam_t, the current epoch's sums), the Adam moments m and v (flat float32 tensors of
    num_params elements, in parameter order), the training log (bytes, CSV text) and the
    class names (a list of str, or None: the model has none)."""

    def __init__(self, config, state=None, adam_m=None, adam_v=None, log=b"", version=VERSION,
                 class_names=None):
        self.version = version
        self.config = dict(config)
        self.config.setdefault("routing", "dynamic")
        state = DEFAULT_STATE if state is None else state
        # The f32 fields as the file holds them, so that a fresh state is what it writes.
        self.state = {k: _f32(state[k]) if code == "f" else state[k] for k, code in _STATE_FIELDS}
        n = num_params(self.config)
        self.adam_m = torch.zeros(n) if adam_m is None else adam_m
        self.adam_v = torch.zeros(n) if adam_v is None else adam_v
        self.log = log
        self.class_names = None if class_names is None else list(class_names)

    @property
    def log_text(self):
        return self.log.decode("utf-8", errors="replace")

    def header(self, log_bytes, names_bytes=0, version=None):
        """The header bytes of version (self.version when None): 216 bytes of version 3,
        208 of version 2 (no names_bytes), 192 of version 1 (no routing either)."""
        version = self.version if version is None else version
        c, s = self.config, self.state
        fields = [MAGIC, version, HEADER_BYTES[version] - PREAMBLE_BYTES]
        fields += [c[k] for k in CONFIG_FIELDS] + [s[k] for k, _ in _STATE_FIELDS]
        fields += [num_params(c), log_bytes]
        if version >= 2:
            fields.append(c["routing"].encode("ascii"))
        if version >= 3:
            fields.append(names_bytes)
        elif names_bytes:
            raise ValueError("version %d files have no class names" % version)
        return _HEADERS[version].pack(*fields)


def _read_exact(f, n, path):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            # The size matched before we read: someone shortened the file meanwhile.
            raise ValueError("%s: truncated while being read (expected %d more bytes)"
                             % (path, n - got))
        got += k
    return buf


def read_file(path):
    """Reads and checks a model file (versions 1, 2 and 3) in the order of docs/model-format.md
    ("Reading: what is checked"). Returns (CapsFile, params), params a flat float32 tensor
    of num_params elements. Raises ValueError naming the file and the problem for a file
    that is not a valid model file, OSError when it cannot be read."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("%s: not a regular file (expected a model file)" % path)
        head = f.read(max(HEADER_BYTES.values()))
        # The magic first, on as many of its bytes as there are: a short file of another
        # kind is "not a model file", an empty or cut-off model file "truncated".
        n = min(len(head), len(MAGIC))
        if head[:n] != MAGIC[:n]:
            raise ValueError('%s: not a capsnet model file (expected magic "%s", got "%s")'
                             % (path, _escape(MAGIC), _escape(head[:n])))
        if len(head) < PREAMBLE_BYTES:
            raise ValueError("%s: truncated header (expected %d bytes, got %d)"
                             % (path, HEADER_BYTES[VERSION], len(head)))
        version, header_bytes = struct.unpack_from("<II", head, 8)
        if version not in HEADER_BYTES:
            raise ValueError("%s: unsupported model file version (expected 1 to %d, got %d)"
                             % (path, VERSION, version))
        size = HEADER_BYTES[version]
        if header_bytes != size - PREAMBLE_BYTES:
            raise ValueError("%s: wrong header size for version %d (expected %d, got %d)"
                             % (path, version, size - PREAMBLE_BYTES, header_bytes))
        if len(head) < size:
            raise ValueError("%s: truncated header (expected %d bytes, got %d)"
                             % (path, size, len(head)))
        fields = _HEADERS[version].unpack_from(head)
        config = dict(zip(CONFIG_FIELDS, fields[3:17]))
        state = dict(zip((k for k, _ in _STATE_FIELDS), fields[17:35]))
        n_params, log_bytes = fields[35], fields[36]
        names_bytes = fields[38] if version >= 3 else 0
        config["routing"] = "dynamic"  # version 1: the only routing there was
        if version >= 2:
            field = fields[37]
            name = field.rstrip(b"\0")
            if len(name) == ROUTING_BYTES or b"\0" in name:
                raise ValueError('%s: routing field malformed (expected a name NUL-padded to '
                                 '%d bytes, got "%s")' % (path, ROUTING_BYTES, _escape(field)))
            if name.decode("latin-1") not in ROUTINGS:
                raise ValueError('%s: unknown routing "%s" (expected %s)'
                                 % (path, _escape(name), ", ".join(ROUTINGS)))
            config["routing"] = name.decode("ascii")
        problem = check_config(config)
        if problem:
            raise ValueError("%s: %s" % (path, problem))
        want = num_params(config)
        if n_params != want:
            raise ValueError("%s: parameter count does not match the configuration "
                             "(expected %d, got %d)" % (path, want, n_params))
        if log_bytes > MAX_LOG_BYTES:
            raise ValueError("%s: training log too long (expected at most %d bytes, got %d)"
                             % (path, MAX_LOG_BYTES, log_bytes))
        names_max = config["num_classes"] * CLASS_NAME_MAX
        if names_bytes > names_max:
            raise ValueError("%s: class names too long (expected at most %d bytes for %d "
                             "classes, got %d)" % (path, names_max, config["num_classes"],
                                                   names_bytes))
        problem = check_state(state)
        if problem:
            raise ValueError("%s: %s" % (path, problem))
        expect = size + 12 * n_params + log_bytes + names_bytes + CRC_BYTES
        if st.st_size != expect:
            raise ValueError("%s: %s (expected %d bytes, got %d)"
                             % (path, "truncated" if st.st_size < expect else "trailing data",
                                expect, st.st_size))
        # The payload: parameters, Adam m, Adam v, log; the CRC over all bytes before it.
        f.seek(size)
        crc = zlib.crc32(head[:size])
        arrays = []
        for _ in range(3):
            buf = _read_exact(f, 4 * n_params, path)
            crc = zlib.crc32(buf, crc)
            # "<f4": the file is little-endian whatever the host.
            arrays.append(torch.from_numpy(np.frombuffer(buf, dtype="<f4").astype("=f4",
                                                                                copy=False)))
        log = bytes(_read_exact(f, log_bytes, path))
        crc = zlib.crc32(log, crc)
        block = bytes(_read_exact(f, names_bytes, path))
        crc = zlib.crc32(block, crc)
        stored = struct.unpack("<I", _read_exact(f, CRC_BYTES, path))[0]
        if stored != crc:
            raise ValueError("%s: checksum mismatch (expected 0x%08x, got 0x%08x)"
                             % (path, stored, crc))
    names = _read_names(block, config["num_classes"], path) if block else None
    info = CapsFile(config, state, arrays[1], arrays[2], log, version, names)
    return info, arrays[0]


def _read_names(block, num_classes, path):
    """The names block of a file whose CRC matched: num_classes names, each followed by
    "\n" (step 14 of docs/model-format.md's checks)."""
    if not block.endswith(b"\n"):
        raise ValueError("%s: class names: last name not terminated (expected each name "
                         "followed by a newline)" % path)
    raw = block[:-1].split(b"\n")
    if len(raw) != num_classes:
        raise ValueError("%s: class names: wrong count (expected %d, one per class, got %d)"
                         % (path, num_classes, len(raw)))
    for k, name in enumerate(raw):
        problem = check_name(name)
        if problem:
            raise ValueError("%s: class names: class %d: %s" % (path, k, problem))
    return [name.decode("utf-8", "surrogateescape") for name in raw]


def _float_bytes(t):
    """A tensor's elements as little-endian float32 bytes, row-major (the file's layout)."""
    return t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4",
                                                                         copy=False).tobytes()


_NO_NAMES = object()


def write_file(path, info, params, class_names=_NO_NAMES):
    """Writes a model file atomically: a temporary file beside path, flushed and fsynced,
    then renamed over it, so that a reader sees the old file or the new one. params: the 11
    parameter tensors in file order; class_names: a list of str or None (default: those of
    info). The version is info.version (that of the file read, so load then save gives the
    same bytes), except that names need version 3."""
    names = info.class_names if class_names is _NO_NAMES else class_names
    problem = (check_config(info.config) or check_state(info.state)
               or check_class_names(names, info.config.get("num_classes")))
    if problem:
        raise ValueError("%s: %s" % (path, problem))
    block = b"".join(_name_bytes(name) + b"\n" for name in names) if names else b""
    version = 3 if block else info.version
    n = num_params(info.config)
    shapes = param_shapes(info.config)
    if len(params) != len(shapes):
        raise ValueError("%s: expected %d parameter tensors, got %d" % (path, len(shapes),
                                                                          len(params)))
    for name, p, shape in zip(PARAM_NAMES, params, shapes):
        if tuple(p.shape) != shape:
            raise ValueError("%s: parameter %s has shape %s (expected %s)"
                             % (path, name, tuple(p.shape), shape))
    for name, a in (("adam_m", info.adam_m), ("adam_v", info.adam_v)):
        if a.numel() != n:
            raise ValueError("%s: %s has %d elements (expected %d)" % (path, name, a.numel(), n))
    log = bytes(info.log)
    if len(log) > MAX_LOG_BYTES:
        raise ValueError("%s: training log too long (expected at most %d bytes, got %d)"
                         % (path, MAX_LOG_BYTES, len(log)))
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            crc = 0
            try:
                header = info.header(len(log), len(block), version)
            except struct.error as e:  # an integer field beyond its type
                raise ValueError("%s: header field out of range (%s)" % (path, e)) from e
            blocks = [header] + [_float_bytes(p) for p in params]
            blocks += [_float_bytes(info.adam_m), _float_bytes(info.adam_v), log, block]
            for b in blocks:
                f.write(b)
                crc = zlib.crc32(b, crc)
            f.write(struct.pack("<I", crc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------- the network


def squash(s):
    """Eq. 1 over the last dimension: v = |s|^2 / (1 + |s|^2) * s / |s| = s |s| / (1 + |s|^2).
    The right-hand form needs no epsilon: it is exact and finite at s = 0."""
    n2 = (s * s).sum(-1, keepdim=True)
    return s * n2.sqrt() / (1 + n2)


class DigitCaps(nn.Module):
    """The class capsules: prediction vectors (eq. 2) and routing by agreement (Procedure 1).

    Dimension letters: B images, I = T*G*G primary (child) capsules of D, J class (parent)
    capsules of E, R routing rounds. weight W [I][J][E][D], no bias."""

    def __init__(self, num_in, in_dim, num_out, out_dim, routing_iters):
        super().__init__()
        self.num_in, self.in_dim = num_in, in_dim
        self.num_out, self.out_dim = num_out, out_dim
        self.routing_iters = routing_iters
        self.weight = nn.Parameter(torch.empty(num_in, num_out, out_dim, in_dim))

    def forward(self, u):
        """u [B][I][D] -> v [B][J][E]."""
        I, D, J, E = self.num_in, self.in_dim, self.num_out, self.out_dim
        # Eq. 2: u_hat[b,i,j,e] = sum_d W[i,j,e,d] u[b,i,d], as one batched product over i:
        # [I][B][D] @ [I][D][J*E] -> [I][B][J*E]. Every product here is a plain (batched)
        # MatMul, in PyTorch and in an ONNX export alike.
        u_hat = torch.matmul(u.transpose(0, 1), self.weight.reshape(I, J * E, D).transpose(1, 2))
        # Held as [B][J][I][E]: each parent's predictions from all children side by side,
        # so that both routing sums over i and over e are matrix products.
        u_hat = u_hat.reshape(I, -1, J, E).permute(1, 2, 0, 3)  # [B][J][I][E]
        # Procedure 1. The logits b_ij, kept as [B][J][I], start at 0 (zeros_like keeps the
        # batch dynamic in a traced graph); gradients flow through every round, as in the C
        # library.
        b = torch.zeros_like(u_hat[..., 0])  # [B][J][I]
        v = None
        for r in range(self.routing_iters):
            c = F.softmax(b, dim=1)  # eq. 3: each child's couplings over its J parents
            s = torch.matmul(c.unsqueeze(2), u_hat).squeeze(2)  # s_j = sum_i c_ij u_hat_j|i
            v = squash(s)  # eq. 1, [B][J][E]
            if r < self.routing_iters - 1:
                # b_ij += u_hat_j|i . v_j, the agreement; the last round's is never used.
                b = b + torch.matmul(u_hat, v.unsqueeze(-1)).squeeze(-1)
        return v


class CapsNet(nn.Module):
    """The capsule network of a configuration: a dict with the 14 fields of caps_config
    (CONFIG_FIELDS, e.g. MNIST_CONFIG) and optionally "routing" ("dynamic", the only one).

    A fresh module starts like capsnet's (PyTorch's default initialisation of the
    convolutions and the decoder, W ~ N(0, 0.03^2)), from torch's global generator.
    forward(x, labels=None): x [B][C][S][S] float32 in [0, 1]; returns the capsule lengths
    [B][J] and the reconstruction [B][C*S*S] from the capsule of the label when labels [B]
    are given (training), else of the longest capsule (test). class_names: the classes' names
    (a list of num_classes str) or None; load sets them from the file, save writes them."""

    def __init__(self, config):
        super().__init__()
        self.class_names = None
        config = dict(config)
        config.setdefault("routing", "dynamic")
        problem = check_config(config)
        if problem:
            raise ValueError(problem)
        self.config = config
        c, d = config, derived_shapes(config)
        self.grid = d["G"]
        self.num_primary = d["I"]
        J, E = c["num_classes"], c["digit_dim"]
        # Registered in file order: state_dict() lists the parameters as the file does.
        self.conv1 = nn.Conv2d(c["in_channels"], c["conv1_channels"], c["conv1_kernel"],
                               stride=c["conv1_stride"])
        self.primary_caps = nn.Conv2d(c["conv1_channels"], c["primary_types"] * c["primary_dim"],
                                      c["primary_kernel"], stride=c["primary_stride"])
        self.digit_caps = DigitCaps(d["I"], c["primary_dim"], J, E, c["routing_iters"])
        self.decoder = nn.Sequential(
            nn.Linear(J * E, c["decoder_hidden1"]), nn.ReLU(),
            nn.Linear(c["decoder_hidden1"], c["decoder_hidden2"]), nn.ReLU(),
            nn.Linear(c["decoder_hidden2"], d["P"]), nn.Sigmoid())
        with torch.no_grad():
            self.digit_caps.weight.normal_(0.0, W_INIT_STD)

    def parameter_list(self):
        """The 11 parameters in file order (PARAM_NAMES)."""
        params = dict(self.named_parameters())
        return [params[name] for name in PARAM_NAMES]

    def primary_capsules(self, x):
        """x [B][C][S][S] -> the squashed primary capsules u [B][I][D]."""
        c = self.config
        T, D, G = c["primary_types"], c["primary_dim"], self.grid
        a = F.relu(self.conv1(x))  # [B][C1][S1][S1]
        p = self.primary_caps(a)  # [B][T*D][G][G], no ReLU: the squash is the nonlinearity
        # Channel t*D + d at (y, x) is dimension d of capsule i = t*G*G + y*G + x:
        # .view(B, T, D, G, G).permute(0, 1, 3, 4, 2).reshape(B, T*G*G, D).
        u = p.reshape(-1, T, D, G, G).permute(0, 1, 3, 4, 2).reshape(-1, T * G * G, D)
        return squash(u)  # eq. 1

    def forward(self, x, labels=None):
        c = self.config
        S, C, J, E = c["image_size"], c["in_channels"], c["num_classes"], c["digit_dim"]
        if not torch.jit.is_tracing() and (x.dim() != 4 or tuple(x.shape[1:]) != (C, S, S)):
            raise ValueError("CapsNet: input of shape %s (expected [B][%d][%d][%d])"
                             % (tuple(x.shape), C, S, S))
        v = self.digit_caps(self.primary_capsules(x))  # [B][J][E]
        lengths = (v * v).sum(-1).sqrt()  # |v_j|, the probability that class j is present
        # The decoder sees one capsule: the true class in training, else the longest
        # (argmax takes the first of equal lengths, as capsnet does).
        keep = labels if labels is not None else lengths.argmax(1)
        mask = (torch.arange(J, device=x.device) == keep.unsqueeze(1)).to(v.dtype)  # [B][J]
        recon = self.decoder((v * mask.unsqueeze(-1)).reshape(-1, J * E))  # [B][C*S*S]
        return lengths, recon


def capsnet_loss(lengths, recon, x, labels, recon_weight=0.0005):
    """The training loss, batch mean: margin loss (eq. 4: m+ 0.9, m- 0.1, lambda 0.5,
    squared hinges summed over the classes) plus recon_weight times the sum of squared
    pixel errors of the reconstruction (section 4.1)."""
    t = F.one_hot(labels, lengths.shape[1]).to(lengths.dtype)
    margin = (t * F.relu(M_PLUS - lengths) ** 2
              + LAMBDA * (1 - t) * F.relu(lengths - M_MINUS) ** 2).sum(1)
    sse = ((recon - x.reshape(x.shape[0], -1)) ** 2).sum(1)
    return (margin + recon_weight * sse).mean()


# ---------------------------------------------------------------------------- the interface


def load(path):
    """The CapsNet of a capsnet model file (version 1, 2 or 3), float32, in eval mode, with
    the file's class names as .class_names (None when it has none) and the rest of the file
    (header, training state, Adam moments, log) as .capsnet_file."""
    info, flat = read_file(path)
    net = CapsNet(info.config)
    with torch.no_grad():
        offset = 0
        for p in net.parameter_list():
            k = p.numel()
            p.copy_(flat[offset:offset + k].view(p.shape))
            offset += k
    net.capsnet_file = info
    net.class_names = None if info.class_names is None else list(info.class_names)
    return net.eval()


def save(net, path):
    """Writes net as a model file, atomically, with its class_names. A module from load keeps
    its file's version, header, training state, Adam moments and log (so load then save gives
    the same bytes, for a file of any version; names make it version 3); a fresh one is
    version 3 with capsnet train's defaults, epoch 0, zero Adam moments and step count, and
    an empty log."""
    info = getattr(net, "capsnet_file", None)
    if info is None:
        info = CapsFile(net.config)
    elif info.config != net.config:
        raise ValueError("%s: the module's configuration differs from its capsnet_file's" % path)
    write_file(path, info, net.parameter_list(), getattr(net, "class_names", None))


def class_names_json(names):
    """The names as a JSON array of strings, as capsnet export writes them into a
    safetensors header's __metadata__ and this module into ONNX metadata: UTF-8 as is, the
    bytes of a name that are not UTF-8 as U+FFFD, one per byte."""
    # One U+FFFD per byte that is not UTF-8, as capsnet's export writes them.
    text = [_name_bytes(n).decode("utf-8", "surrogateescape") for n in names]
    text = ["".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in t) for t in text]
    return json.dumps(text, ensure_ascii=False, separators=(",", ":"))


def export_onnx(net, path, opset=13, check=True):
    """Exports the inference network to ONNX: input "image" [batch][C][S][S] float32 in
    [0, 1], outputs "lengths" [batch][J] and "reconstruction" [batch][C*S*S] (the decoder
    masked by the predicted class); the batch dimension is dynamic, the routing rounds are
    unrolled. The initializers are the 11 parameters under their state_dict names and in
    the file's layouts (no constant folding, which would store W reshaped under a made-up
    name). With check, the onnx package (python3-onnx) checks the file and records the
    static output sizes J and C*S*S, which the exporter leaves symbolic. The module's
    class_names, when it has them, go into the model's metadata_props as "class_names": a
    JSON array of strings (this needs the onnx package too)."""
    c = net.config
    S, J = c["image_size"], c["num_classes"]
    problem = check_class_names(getattr(net, "class_names", None), J)
    if problem:
        raise ValueError("%s: %s" % (path, problem))
    example = torch.rand(2, c["in_channels"], S, S)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(net, (example,), path, opset_version=opset,
                              input_names=["image"], output_names=["lengths", "reconstruction"],
                              dynamic_axes={"image": {0: "batch"}, "lengths": {0: "batch"},
                                            "reconstruction": {0: "batch"}},
                              do_constant_folding=False)
    finally:
        net.train(was_training)
    names = getattr(net, "class_names", None)
    if check or names:
        try:
            import onnx
        except ImportError as e:
            raise ImportError("%s the export needs the onnx package (Debian: apt-get install "
                              "python3-onnx): %s" % ("checking" if check else "naming the "
                                                     "classes in", e)) from e
        model = onnx.load(path)
        if names:
            entry = model.metadata_props.add()
            entry.key = "class_names"
            entry.value = class_names_json(names)
        if check:
            for out, size in zip(model.graph.output, (J, derived_shapes(c)["P"])):
                out.type.tensor_type.shape.dim[1].dim_value = size
            onnx.checker.check_model(model, full_check=True)
        tmp = "%s.tmp.%d" % (path, os.getpid())
        onnx.save(model, tmp)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------- test sets

IDX_LABELS, IDX_IMAGES, IDX_IMAGES_NCHW = 0x00000801, 0x00000803, 0x00000804


def _open_idx(folder, name):
    """folder/name.gz when it exists, else folder/name, as capsnet looks them up."""
    gz = os.path.join(folder, name + ".gz")
    if os.path.exists(gz) or not os.path.exists(os.path.join(folder, name)):
        return gz, gzip.open(gz, "rb")
    path = os.path.join(folder, name)
    return path, open(path, "rb")


def _read_idx(folder, name, magics, count):
    """The first count items of an IDX file (src/idx.c has the format): (dims of one
    item, their bytes). count None: all of them."""
    path, f = _open_idx(folder, name)
    with f:
        try:
            head = f.read(4)
            magic = struct.unpack(">I", head)[0] if len(head) == 4 else None
            if magic not in magics:
                raise ValueError("%s: not an IDX file of this kind (expected magic %s, got %s)"
                                 % (path, " or ".join("0x%08x" % m for m in magics),
                                    _escape(head)))
            rank = magic & 0xFF
            raw = f.read(4 * rank)
            if len(raw) < 4 * rank:
                raise ValueError("%s: truncated header" % path)
            dims = struct.unpack(">%dI" % rank, raw)
            count = dims[0] if count is None else count
            if count > dims[0]:
                raise ValueError("%s: %d items (expected at least %d)" % (path, dims[0], count))
            item = 1
            for d in dims[1:]:
                item *= d
            data = f.read(count * item)
        except (OSError, EOFError) as e:  # gzip's errors: not gzip, cut off
            raise ValueError("%s: %s" % (path, e)) from e
        if len(data) < count * item:
            raise ValueError("%s: truncated (expected %d bytes of items, got %d)"
                             % (path, count * item, len(data)))
    return dims[1:], data


def read_test_set(folder, count=None):
    """The first count images of the test set in folder (t10k-images-idx3-ubyte[.gz], rank 3
    [N][H][W] or rank 4 [N][C][H][W], and t10k-labels-idx1-ubyte[.gz]), as capsnet test
    reads them: x [N][C][H][W] float32, byte / 255 (the float32 nearest the quotient), and
    labels [N] int64. count None: all."""
    dims, pixels = _read_idx(folder, "t10k-images-idx3-ubyte", (IDX_IMAGES, IDX_IMAGES_NCHW),
                             count)
    n = len(pixels) // max(1, math.prod(dims))
    _, labels = _read_idx(folder, "t10k-labels-idx1-ubyte", (IDX_LABELS,), n)
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).float() / 255
    shape = (n, 1) + tuple(dims) if len(dims) == 2 else (n,) + tuple(dims)
    return x.reshape(shape), torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()


def write_per_image(f, lengths, labels):
    """The per-image CSV of capsnet test --per-image: index,label,prediction,length_0,...,
    every length with %.9g (a float32 reads back exactly)."""
    J = lengths.shape[1]
    f.write("index,label,prediction" + "".join(",length_%d" % j for j in range(J)) + "\n")
    pred = lengths.argmax(1).tolist()
    for i, (lab, row) in enumerate(zip(labels.tolist(), lengths.tolist())):
        f.write("%d,%d,%d%s\n" % (i, lab, pred[i], "".join(",%.9g" % l for l in row)))


# ---------------------------------------------------------------------------- command line


def _cmd_onnx(args):
    export_onnx(load(args.model), args.out, opset=args.opset)
    print("wrote %s" % args.out)


def _cmd_lengths(args):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(args.threads or cores or 1)
    net = load(args.model)
    c = net.config
    x, labels = read_test_set(args.data, args.count)
    if tuple(x.shape[1:]) != (c["in_channels"], c["image_size"], c["image_size"]):
        raise ValueError("%s: images of %d channels of %dx%d (expected %d of %dx%d for %s)"
                         % (args.data, x.shape[1], x.shape[2], x.shape[3], c["in_channels"],
                            c["image_size"], c["image_size"], args.model))
    if len(labels) and int(labels.max()) >= c["num_classes"]:
        raise ValueError("%s: label %d out of range (expected 0..%d)"
                         % (args.data, int(labels.max()), c["num_classes"] - 1))
    with torch.no_grad():
        lengths = torch.cat([net(x[k:k + args.batch])[0] for k in range(0, len(x), args.batch)])
    if args.out == "-":
        write_per_image(sys.stdout, lengths, labels)
        return
    tmp = "%s.tmp.%d" % (args.out, os.getpid())
    try:
        with open(tmp, "w") as f:
            write_per_image(f, lengths, labels)
        os.replace(tmp, args.out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    correct = int((lengths.argmax(1) == labels).sum())
    print("wrote %s: %d images, accuracy %.2f%%" % (args.out, len(x), 100.0 * correct / len(x)))


def _cmd_roundtrip(args):
    save(load(args.model), args.out)
    print("wrote %s" % args.out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="capsnet_torch.py",
        description="capsnet model files in PyTorch: export to ONNX, compute capsule lengths, "
                    "load and save.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("onnx", help="export MODEL to ONNX (input image, outputs lengths, "
                                    "reconstruction; dynamic batch)")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (13; at most 17 here)")
    p.set_defaults(run=_cmd_onnx)
    p = sub.add_parser("lengths", help="per-image capsule lengths of the first N test images "
                                       "in DIR, CSV as capsnet test --per-image")
    p.add_argument("model")
    p.add_argument("--data", default="data/mnist", help="test set folder (data/mnist)")
    p.add_argument("--count", type=int, default=None, help="the first N images (all)")
    p.add_argument("--batch", type=int, default=100, help="images per forward pass (100)")
    p.add_argument("--out", default="-", help="CSV file (- for standard output)")
    p.add_argument("--threads", type=int, default=0, help="threads, 0 = all cores (0)")
    p.set_defaults(run=_cmd_lengths)
    p = sub.add_parser("roundtrip", help="load MODEL and save it as OUT (in its version)")
    p.add_argument("model")
    p.add_argument("out")
    p.set_defaults(run=_cmd_roundtrip)
    args = parser.parse_args(argv)
    if getattr(args, "count", None) is not None and args.count < 1 or getattr(args, "batch", 1) < 1:
        parser.error("--count and --batch must be at least 1")
    try:
        args.run(args)
    except OSError as e:
        name = e.filename if e.filename is not None else ""
        sys.stderr.write("capsnet_torch.py: error: %s%s\n"
                         % (name + ": " if name else "", e.strerror or e))
        return 1
    except (ValueError, ImportError) as e:
        sys.stderr.write("capsnet_torch.py: error: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
