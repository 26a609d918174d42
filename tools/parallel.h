/*
 * parallel.h: the processes of a data-parallel run, as the program sees them. tools/mpi.c
 * implements this with MPI (make MPI=1, run under mpirun); tools/no_mpi.c is the single
 * process of the default build, which refuses to run as one of many.
 *
 * Only `capsnet train` runs as many processes; there every process trains its share of
 * each batch (caps_train_epoch_comm), and process 0 alone prints, writes the model and the
 * log.
 */
#ifndef CAPS_PARALLEL_H
#define CAPS_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

#include "capsnet.h"

/* Joins the run (MPI_Init). 0, or an exit status after a message. */
int par_init(int *argc, char ***argv);
/* Leaves it: status 0 or 130 (interrupted, saved) ends normally; any other status while
 * other processes run ends them all (MPI_Abort), so that none waits for a dead one. */
int par_finish(int status);
int par_rank(void);
int par_size(void);
/* Processes on this machine (for the default thread count). */
int par_local_size(void);
/* The sums of caps_train_epoch_comm; NULL for a single process. */
caps_comm *par_comm(void);
/* "MPI (Open MPI v4.1.4), CUDA-aware" and the like, or "one process". */
const char *par_describe(void);
/* Sums buf over the processes, in place. 0, or non-zero after a message. */
int par_sum_doubles(double *buf, size_t count);
/* Every process passes a fingerprint of `what`; 0 when all are equal, else process 0 says
 * which process differs ("process 1's arguments differ from process 0's") and all return
 * non-zero. */
int par_agree(const char *what, uint64_t fingerprint);

#endif /* CAPS_PARALLEL_H */
