/*
 * augment.c: turns stored images into a batch of network inputs, with the paper's only
 * augmentation (section 5): "shifted by up to 2 pixels in each direction with zero padding".
 *
 *   x[b][c][y][x] = image[idx[b]][c][y - dy][x - dx] / 255   (0 outside the image)
 *
 * with dx, dy uniform in [-max_shift, max_shift] per image. Pixels are scaled to [0, 1],
 * the range of the decoder's sigmoid, so the reconstruction target is the shifted image.
 *
 * Dimension letters: B images, C channels, H x W pixels.
 */
#include <string.h>

#include "capsnet.h"
#include "util.h"

/* out [C][H][W] = in shifted right by dx and down by dy, zero fill, scaled to [0, 1]. */
static void shift_image(float *out, const uint8_t *in, int C, int H, int W, int dx, int dy) {
    memset(out, 0, (size_t)C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            int sy = y - dy;
            if (sy < 0 || sy >= H) continue;
            for (int x = 0; x < W; x++) {
                int sx = x - dx;
                if (sx < 0 || sx >= W) continue;
                out[((size_t)c * H + y) * W + x] =
                    in[((size_t)c * H + sy) * W + sx] * (1.0f / 255.0f);
            }
        }
}

void caps_make_batch(float *x, int *labels, const caps_dataset *ds, const int *idx, int B,
                     int max_shift, caps_rng *rng) {
    int C = ds->channels, H = ds->rows, W = ds->cols;
    size_t P = (size_t)C * H * W;
    CAPS_ASSERT(max_shift >= 0 && max_shift < H && max_shift < W);
    for (int b = 0; b < B; b++) {
        CAPS_ASSERT(idx[b] >= 0 && idx[b] < ds->count);
        int dx = 0, dy = 0;
        if (max_shift > 0) {
            uint32_t span = (uint32_t)(2 * max_shift + 1);
            dx = (int)caps_rng_below(rng, span) - max_shift;
            dy = (int)caps_rng_below(rng, span) - max_shift;
        }
        shift_image(x + (size_t)b * P, ds->images + (size_t)idx[b] * P, C, H, W, dx, dy);
        labels[b] = ds->labels[idx[b]];
    }
}
