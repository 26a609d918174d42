/*
 * epoch.h: the random choices of a training epoch that every network shares (train.c for
 * the capsule network, cnn_train.c for the baseline CNN): the order of the images, from
 * (seed, epoch), and the generator of a batch's shifts, from (seed, epoch, batch). Drawn
 * from nothing carried between batches, so a run stopped after any batch resumes exactly;
 * the same seed gives both networks the same images in the same order with the same shifts.
 * Internal, not part of the public API.
 */
#ifndef CAPS_EPOCH_H
#define CAPS_EPOCH_H

#include <stdint.h>

#include "capsnet.h"

/* order[0..n-1]: a permutation of the first n images, Fisher-Yates from (seed, epoch). */
void caps_epoch_order(int *order, int n, uint64_t seed, int epoch);
/* The generator of batch bi's shifts in epoch (its own stream: never the shuffle's). */
void caps_epoch_shift_rng(caps_rng *r, uint64_t seed, int epoch, int bi);
/* The data must have the shape the network was built for: S x S images of C channels,
 * labels below J. CAPS_ERR_ARG saying what differs. */
int caps_epoch_check_data(const caps_dataset *ds, int S, int C, int J, caps_error *err);
/* The end of a run of an epoch's batches: out gets the epoch's means so far (from st's sums)
 * and, when the epoch finished, st moves to the start of the next one. */
void caps_epoch_close(caps_train_state *st, caps_epoch_stats *out, int finished);

#endif /* CAPS_EPOCH_H */
