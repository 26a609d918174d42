/*
 * mpi.c: parallel.h over MPI (make MPI=1): the processes mpirun starts train one model.
 *
 * The gradients are summed with MPI_Allreduce, or, overlapped with the backward pass, with
 * one MPI_Iallreduce per bucket of layers (caps_comm.start_sum_floats) that MPI_Testall
 * advances between layers and MPI_Waitall completes before the Adam step. Errors are MPI's
 * default, fatal: a process that dies or fails a collective ends the run, and mpirun says
 * which one, rather than leaving the others waiting. A program of this build started
 * without a launcher (no mpirun) runs as one process and never initialises MPI.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>
#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h> /* MPIX_CUDA_AWARE_SUPPORT, where Open MPI was built with CUDA */
#endif

#include "parallel.h"

static int rank, size = 1, local_size = 1, initialised;
static caps_comm comm;
static char described[MPI_MAX_LIBRARY_VERSION_STRING + 96] = "one process";

/* Started sums: one per bucket of a step (backward has CAPS_GRAD_BUCKETS, 4). */
#define MAX_PENDING 16
static MPI_Request pending[MAX_PENDING];
static int npending;

/* MPI counts are ints: sums of more values go in pieces. */
static int sum_floats(caps_comm *c, float *buf, size_t count, caps_error *err) {
    (void)c, (void)err;
    for (size_t done = 0; done < count;) {
        int n = count - done > INT_MAX ? INT_MAX : (int)(count - done);
        MPI_Allreduce(MPI_IN_PLACE, buf + done, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        done += (size_t)n;
    }
    return CAPS_OK;
}

static int sum_doubles(caps_comm *c, double *buf, size_t count, caps_error *err) {
    (void)c, (void)err;
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return CAPS_OK;
}

static int start_sum_floats(caps_comm *c, float *buf, size_t count, caps_error *err) {
    if (count > INT_MAX || npending == MAX_PENDING) { /* not for buckets of this size */
        if (npending) MPI_Waitall(npending, pending, MPI_STATUSES_IGNORE);
        npending = 0;
        return sum_floats(c, buf, count, err);
    }
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                   &pending[npending++]);
    return CAPS_OK;
}

/* MPI moves a non-blocking collective on only inside MPI calls: one between layers. */
static void progress(caps_comm *c) {
    (void)c;
    int done;
    if (npending) MPI_Testall(npending, pending, &done, MPI_STATUSES_IGNORE);
}

static int wait_all(caps_comm *c, caps_error *err) {
    (void)c, (void)err;
    if (npending) MPI_Waitall(npending, pending, MPI_STATUSES_IGNORE);
    npending = 0;
    return CAPS_OK;
}

int par_init(int *argc, char ***argv) {
    /* Started by a launcher? Without one, this is a plain single-process run. */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"};
    int launched = 0;
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) launched |= getenv(vars[k]) != NULL;
    if (!launched) return 0;
    /* MPI is called from the main thread only; OpenMP threads compute between calls. */
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "capsnet: error: MPI_Init failed\n");
        return 1;
    }
    initialised = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size);

    /* One GPU per process on each machine (the CUDA backend reads it; the user's wins). */
    int local_rank;
    MPI_Comm_rank(local, &local_rank);
    char device[16];
    snprintf(device, sizeof device, "%d", local_rank);
    setenv("CAPS_CUDA_DEVICE", device, 0);
    MPI_Comm_free(&local);
    comm = (caps_comm){.rank = rank, .size = size, .sum_floats = sum_floats,
                       .sum_doubles = sum_doubles, .start_sum_floats = start_sum_floats,
                       .progress = progress, .wait_all = wait_all};
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    comm.device_buffers = MPIX_Query_cuda_support();
#endif
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len;
    MPI_Get_library_version(version, &len);
    version[strcspn(version, ",\n")] = '\0'; /* "Open MPI v4.1.4" */
    snprintf(described, sizeof described, "%d processes over MPI (%s; GPU buffers %s)", size,
             version, comm.device_buffers ? "direct, CUDA-aware" : "through the host");
    return 0;
}

int par_finish(int status) {
    if (!initialised) return status;
    if (size > 1 && status != 0 && status != 130) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
    return status;
}

int par_rank(void) { return rank; }
int par_size(void) { return size; }
int par_local_size(void) { return local_size; }
caps_comm *par_comm(void) { return size > 1 ? &comm : NULL; }
const char *par_describe(void) { return described; }

int par_sum_doubles(double *buf, size_t count) {
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return 0;
}

int par_agree(const char *what, uint64_t fingerprint) {
    if (size < 2) return 0;
    uint64_t *all = malloc((size_t)size * sizeof *all);
    if (!all) {
        fprintf(stderr, "capsnet: error: out of memory\n");
        return 1;
    }
    MPI_Allgather(&fingerprint, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    int differs = 0;
    for (int r = 1; r < size && !differs; r++)
        if (all[r] != all[0]) differs = r;
    if (differs && rank == 0)
        fprintf(stderr, "capsnet: error: process %d's %s differ from process 0's\n"
                        "hint: every process must run the same command on the same files\n",
                differs, what);
    free(all);
    return differs != 0;
}
