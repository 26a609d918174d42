#!/usr/bin/python3
"""torch_reference.py: an independent PyTorch Capsule Network (Sabour, Frosst & Hinton 2017)
that writes the fixture tests/test_reference.c compares the C library against.

    /usr/bin/python3 tools/torch_reference.py tests/fixtures/reference.txt

The network is written here from the paper, not from the C code, with the layouts the C
model uses so that every parameter maps one to one (include/capsnet.h, caps_params):

    x [B][C][H][W] -> Conv1 (C1 @ K1xK1, stride S1) + ReLU
      -> PrimaryCaps nn.Conv2d(C1, T*D, K2, stride 2), read as capsules by
         .view(B, T, D, G, G).permute(0, 1, 3, 4, 2).reshape(B, T*G*G, D)
         (capsule i = t*G*G + y*G + x, dimension d = channel - D*t), squash (eq. 1)
      -> u_hat[b,i,j,e] = sum_d W[i,j,e,d] u[b,i,d]       W: [I][J][E][D]   (eq. 2)
      -> routing, Procedure 1, R rounds, softmax over the J parents (eq. 3), no detach
      -> lengths |v_j| -> margin loss (eq. 4, m+ 0.9, m- 0.1, lambda 0.5, squared hinges)
      -> decoder on the masked capsules (true label in training, prediction at test):
         Linear(J*E, H1) ReLU -> Linear(H1, H2) ReLU -> Linear(H2, P) sigmoid
      -> reconstruction loss = sum over pixels of (recon - x)^2
    loss = mean over the batch of (margin + recon_weight * reconstruction)
    squash(s) = s |s| / (1 + |s|^2), with no epsilon.

Everything is computed in float64 (the ground truth). The weights and the images are
first rounded to float32, so the C model (float32) starts from exactly the same numbers;
the values are written with %.9g, which float32 reads back exactly.

Configuration (caps_config field order): image 14x14, C = 1, Conv1 6 @ 5x5 stride 1
(-> 10x10), PrimaryCaps 4 types x 3D @ 3x3 stride 2 (-> 4x4 grid, I = 64), J = 5 classes,
E = 6, R = 3, decoder 12 -> 20 -> 196. Every dimension differs from the others, so a
transposed index cannot go unnoticed. Batch B = 4.

Fixture format (tests/fixture.h): "tensor <name> <ndim> <dims...>" then the values,
row-major, on one line; lines starting with # are comments. Tensors, by name:

  config                  [14]  caps_config in field order
  x                       [B][C][H][W]  the images, pixels in [0, 1]
  labels                  [B]   true classes
  <param>                 the 11 parameters before training, capsnet_param_name order:
                          conv1_w conv1_b prim_w prim_b caps_w dec1_w dec1_b dec2_w dec2_b
                          dec3_w dec3_b, in the shapes of caps_params
  fwd.prim                [B][T*D][G][G]  PrimaryCaps convolution output (before squash)
  fwd.u                   [B][I][D]     primary capsules after squash
  fwd.u_hat               [B][I][J][E]  prediction vectors
  fwd.route_v             [R][B][J][E]  squashed parent capsules of every routing round
                                        (route_v[R-1] is the DigitCaps output v)
  fwd.v                   [B][J][E]     DigitCaps output
  fwd.lengths             [B][J]        class scores |v_j|
  fwd.pred                [B]           argmax_j |v_j|
  fwd.recon               [B][P]        reconstruction, decoder masked by the TRUE label
  train_lo.* and train_hi.*: a training-mode pass (mask = label) with two weights
    .recon_weight         []    0.0005 (the paper's) and 0.5 (decoder gradients well above
                                float32 rounding)
    .margin_loss          []    batch mean of the margin loss
    .recon_loss           []    batch mean of recon_weight * reconstruction loss
    .loss                 []    their sum, the loss that is differentiated
    .grad_<param>         d loss / d <param>, 11 tensors
  test.recon_weight       []    0.0005
  test.recon              [B][P]  reconstruction with the decoder masked by fwd.pred
  test.margin_loss, test.recon_loss, test.loss   [] the losses of that pass (labels given)
  adam.lr, adam.beta1, adam.beta2, adam.eps      [] torch.optim.Adam hyperparameters
  adam.recon_weight       []    0.0005
  adam.losses             [5]   the loss before each of 5 Adam steps on the same batch
  adam.final_loss         []    the loss after the 5th step
  adam.<param>            the 11 parameters after the 5 steps

The script prints a short summary and asserts that the fixture is well conditioned: every
term of the margin loss is active somewhere, no ReLU input and no length sits so close to
a kink (ReLU 0, margins 0.1 and 0.9) that float32 rounding could cross it, and the
predictions are clear (the top two lengths are far apart). The output is deterministic.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

# caps_config, in field order.
CONFIG = dict(image_size=14, in_channels=1, conv1_channels=6, conv1_kernel=5, conv1_stride=1,
              primary_types=4, primary_dim=3, primary_kernel=3, primary_stride=2,
              num_classes=5, digit_dim=6, routing_iters=3, decoder_hidden1=12,
              decoder_hidden2=20)
BATCH = 4
LABELS = [0, 3, 1, 4]
SEED = 20171026  # the paper's arXiv date
W_SIGMA = 0.5    # std of W_ij: spreads the digit capsule lengths across 0.1 (0.08 .. 0.5)
# PyTorch's default init gives PrimaryCaps outputs of length ~0.02, where the squash is
# nearly s |s|; scaling that convolution's weights and bias by 4 spreads the primary
# capsule lengths over 0.006 .. 0.55, through the curved part of the squash.
PRIM_GAIN = 4.0
RECON_LO = 0.0005
RECON_HI = 0.5
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
ADAM_STEPS = 5

M_PLUS, M_MINUS, LAMBDA = 0.9, 0.1, 0.5
PARAM_NAMES = ["conv1_w", "conv1_b", "prim_w", "prim_b", "caps_w", "dec1_w", "dec1_b",
               "dec2_w", "dec2_b", "dec3_w", "dec3_b"]

# Distance from a kink below which float32 rounding could put the C model on the other
# side. These quantities are O(1) sums of at most a few hundred O(1) products, so their
# float32 error is below ~1e-6 (relative 6e-8 per operation); 1e-5 leaves a factor 10.
KINK_MARGIN = 1e-5


def squash(s):
    """Eq. 1: v = |s|^2 / (1 + |s|^2) * s / |s| = s |s| / (1 + |s|^2), over the last dim."""
    n2 = (s * s).sum(-1, keepdim=True)
    return s * n2.sqrt() / (1 + n2)


class CapsNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        C, C1 = c["in_channels"], c["conv1_channels"]
        T, D = c["primary_types"], c["primary_dim"]
        self.S1 = (c["image_size"] - c["conv1_kernel"]) // c["conv1_stride"] + 1
        self.G = (self.S1 - c["primary_kernel"]) // c["primary_stride"] + 1
        self.I = T * self.G * self.G
        J, E = c["num_classes"], c["digit_dim"]
        self.P = C * c["image_size"] ** 2
        self.conv1 = nn.Conv2d(C, C1, c["conv1_kernel"], stride=c["conv1_stride"])
        self.prim = nn.Conv2d(C1, T * D, c["primary_kernel"], stride=c["primary_stride"])
        with torch.no_grad():
            self.prim.weight.mul_(PRIM_GAIN)
            self.prim.bias.mul_(PRIM_GAIN)
        self.W = nn.Parameter(torch.randn(self.I, J, E, D) * W_SIGMA)
        self.dec1 = nn.Linear(J * E, c["decoder_hidden1"])
        self.dec2 = nn.Linear(c["decoder_hidden1"], c["decoder_hidden2"])
        self.dec3 = nn.Linear(c["decoder_hidden2"], self.P)

    def params(self):
        """The parameters in the C order (caps_params)."""
        return [self.conv1.weight, self.conv1.bias, self.prim.weight, self.prim.bias, self.W,
                self.dec1.weight, self.dec1.bias, self.dec2.weight, self.dec2.bias,
                self.dec3.weight, self.dec3.bias]

    def forward(self, x, labels, mask_by_label, recon_weight):
        c, B = self.c, x.shape[0]
        T, D, G = c["primary_types"], c["primary_dim"], self.G
        J, E, R = c["num_classes"], c["digit_dim"], c["routing_iters"]
        out = {}
        z1 = self.conv1(x)
        out["z1"] = z1
        a1 = F.relu(z1)
        prim = self.prim(a1)
        out["prim"] = prim
        u = squash(prim.view(B, T, D, G, G).permute(0, 1, 3, 4, 2).reshape(B, T * G * G, D))
        out["u"] = u
        u_hat = torch.einsum("ijed,bid->bije", self.W, u)
        out["u_hat"] = u_hat
        # Procedure 1. b is never detached: gradients flow through every round.
        b = torch.zeros(B, self.I, J)
        vs = []
        for r in range(R):
            cc = F.softmax(b, dim=2)  # over the J parents of each child
            s = (cc[..., None] * u_hat).sum(1)  # [B][J][E]
            v = squash(s)
            vs.append(v)
            if r < R - 1:
                b = b + (u_hat * v[:, None]).sum(-1)
        out["route_v"] = torch.stack(vs)
        out["v"] = v
        lengths = (v * v).sum(-1).sqrt()
        out["lengths"] = lengths
        pred = lengths.argmax(1)
        out["pred"] = pred
        T_k = F.one_hot(labels, J).to(x.dtype)
        margin = (T_k * F.relu(M_PLUS - lengths) ** 2
                  + LAMBDA * (1 - T_k) * F.relu(lengths - M_MINUS) ** 2).sum(1)
        keep = labels if mask_by_label else pred
        masked = (v * F.one_hot(keep, J).to(x.dtype)[..., None]).reshape(B, J * E)
        h1 = self.dec1(masked)
        out["h1"] = h1
        h2 = self.dec2(F.relu(h1))
        out["h2"] = h2
        recon = torch.sigmoid(self.dec3(F.relu(h2)))
        out["recon"] = recon
        sse = ((recon - x.reshape(B, -1)) ** 2).sum(1)
        out["margin_loss"] = margin.mean()
        out["recon_loss"] = (recon_weight * sse).mean()
        out["loss"] = (margin + recon_weight * sse).mean()
        return out


def f32(t):
    """Rounds to float32 and back: the numbers the C model will hold."""
    return t.float().double()


class Writer:
    def __init__(self):
        self.lines = []

    def comment(self, text):
        self.lines.append("# " + text)

    def tensor(self, name, t):
        t = torch.as_tensor(t).detach().to(torch.float64)
        dims = list(t.shape)
        self.lines.append("tensor %s %d%s" % (name, len(dims), "".join(" %d" % d for d in dims)))
        self.lines.append(" ".join("%.9g" % v for v in t.reshape(-1).tolist()))

    def text(self):
        return "\n".join(self.lines) + "\n"


def check_conditioning(out, labels):
    """Asserts that float32 rounding cannot cross a kink and that every loss term is active."""
    lengths = out["lengths"].detach()
    J = lengths.shape[1]
    present = lengths[torch.arange(len(labels)), labels]
    absent = lengths[F.one_hot(labels, J) == 0]
    assert (present < M_PLUS).any(), "no true-class length below m+: that term is inactive"
    assert (absent > M_MINUS).any(), "no absent-class length above m-: that term is inactive"
    for name, val in [("lengths - m+", lengths - M_PLUS), ("lengths - m-", lengths - M_MINUS),
                      ("Conv1 pre-ReLU", out["z1"]), ("dec1 pre-ReLU", out["h1"]),
                      ("dec2 pre-ReLU", out["h2"])]:
        closest = val.detach().abs().min().item()
        assert closest > KINK_MARGIN, "%s: %.3g from a kink" % (name, closest)
    top2 = lengths.topk(2, dim=1).values
    gap = (top2[:, 0] - top2[:, 1]).min().item()
    assert gap > KINK_MARGIN, "a prediction is a near tie (gap %.3g)" % gap


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: torch_reference.py OUTPUT\n")
        return 2
    torch.manual_seed(SEED)
    net = CapsNet(CONFIG)
    with torch.no_grad():
        for p in net.params():
            p.copy_(f32(p))
    B, C, S = BATCH, CONFIG["in_channels"], CONFIG["image_size"]
    x = f32(torch.rand(B, C, S, S))
    labels = torch.tensor(LABELS)
    init = [p.detach().clone() for p in net.params()]

    w = Writer()
    w.comment("Written by tools/torch_reference.py (PyTorch %s, float64); do not edit."
              % torch.__version__)
    w.comment("Capsule Network reference: see the script's header for every tensor.")
    w.tensor("config", [CONFIG[k] for k in CONFIG])
    w.tensor("x", x)
    w.tensor("labels", labels)
    for name, p in zip(PARAM_NAMES, init):
        w.tensor(name, p)

    # Training-mode passes with both reconstruction weights.
    for tag, rw in [("train_lo", RECON_LO), ("train_hi", RECON_HI)]:
        net.zero_grad()
        out = net(x, labels, True, rw)
        out["loss"].backward()
        if tag == "train_lo":
            check_conditioning(out, labels)
            for k in ["prim", "u", "u_hat", "route_v", "v", "lengths", "pred", "recon"]:
                w.tensor("fwd." + k, out[k])
            print("lengths (rows: images, labels %s):" % LABELS)
            for row in out["lengths"].tolist():
                print("  " + " ".join("%.4f" % l for l in row))
            print("predictions", out["pred"].tolist())
        w.tensor(tag + ".recon_weight", torch.tensor(rw))
        for k in ["margin_loss", "recon_loss", "loss"]:
            w.tensor("%s.%s" % (tag, k), out[k])
        for name, p in zip(PARAM_NAMES, net.params()):
            w.tensor("%s.grad_%s" % (tag, name), p.grad)
        print("%s: recon_weight %g  margin %.6f  recon %.6f  loss %.6f" % (
            tag, rw, out["margin_loss"].item(), out["recon_loss"].item(), out["loss"].item()))

    # Test mode: the decoder sees the predicted capsule.
    with torch.no_grad():
        out = net(x, labels, False, RECON_LO)
    assert (out["pred"] != labels).any(), "every prediction equals its label: test mode untested"
    w.tensor("test.recon_weight", torch.tensor(RECON_LO))
    w.tensor("test.recon", out["recon"])
    for k in ["margin_loss", "recon_loss", "loss"]:
        w.tensor("test." + k, out[k])
    print("test: margin %.6f  recon %.6f  loss %.6f" % (
        out["margin_loss"].item(), out["recon_loss"].item(), out["loss"].item()))

    # Five Adam steps on the same batch.
    opt = torch.optim.Adam(net.params(), **ADAM)
    losses = []
    for _ in range(ADAM_STEPS):
        opt.zero_grad()
        out = net(x, labels, True, RECON_LO)
        check_conditioning(out, labels)
        out["loss"].backward()
        losses.append(out["loss"].item())
        opt.step()
    with torch.no_grad():
        final = net(x, labels, True, RECON_LO)["loss"].item()
    w.tensor("adam.lr", torch.tensor(ADAM["lr"]))
    w.tensor("adam.beta1", torch.tensor(ADAM["betas"][0]))
    w.tensor("adam.beta2", torch.tensor(ADAM["betas"][1]))
    w.tensor("adam.eps", torch.tensor(ADAM["eps"]))
    w.tensor("adam.recon_weight", torch.tensor(RECON_LO))
    w.tensor("adam.losses", torch.tensor(losses))
    w.tensor("adam.final_loss", torch.tensor(final))
    for name, p in zip(PARAM_NAMES, net.params()):
        w.tensor("adam." + name, p)
    print("adam losses " + " ".join("%.6f" % l for l in losses) + " -> %.6f" % final)

    text = w.text()
    with open(sys.argv[1], "w") as f:
        f.write(text)
    print("wrote %s (%d bytes)" % (sys.argv[1], len(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
