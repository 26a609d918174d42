/*
 * no_mpi.c: parallel.h for the default build: one process. Started by mpirun as one of
 * several, it says how to build the program that can be, instead of training the same model
 * N times side by side.
 */
#include <stdio.h>
#include <stdlib.h>

#include "parallel.h"

int par_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* The launchers' variables: Open MPI, MPICH / Intel MPI (PMI), Slurm's srun. */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"};
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) {
        const char *v = getenv(vars[k]);
        if (v && atoi(v) > 1) {
            fprintf(stderr, "capsnet: error: started as one of %s processes (%s), but this "
                            "capsnet was built without MPI\n"
                            "hint: build it with `make MPI=1` (Open MPI: apt-get install "
                            "libopenmpi-dev openmpi-bin)\n", v, vars[k]);
            return 1;
        }
    }
    return 0;
}

int par_finish(int status) { return status; }
int par_rank(void) { return 0; }
int par_size(void) { return 1; }
int par_local_size(void) { return 1; }
caps_comm *par_comm(void) { return NULL; }
const char *par_describe(void) { return "one process (built without MPI)"; }
int par_sum_doubles(double *buf, size_t count) { return (void)buf, (void)count, 0; }
int par_agree(const char *what, uint64_t fingerprint) { return (void)what, (void)fingerprint, 0; }
