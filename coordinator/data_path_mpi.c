/*
 * data_path_mpi.c — skv_data_path_start / skv_data_path_stop (data_path_mpi.h).
 *
 * Collective calls, in order, on every rank: MPI_Gather (reports), MPI_Bcast (decision),
 * then, only when the decision is NCCL, skv_nccl_init's MPI_Bcast + ncclCommInitRank +
 * MPI_Allreduce. The decision is broadcast before anyone branches on it, so every rank
 * takes the same branch.
 */
#include "data_path_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skv_check.h"
#include "skv_nccl.h"

/* The decision as rank 0 broadcasts it. */
typedef struct path_msg {
    int path;
    char why[SKV_DATA_PATH_WHY];
} path_msg;

subkv_status skv_data_path_start(MPI_Comm comm, int kind, int device, int want, skv_data_path *out,
                                 skv_err *err) {
    memset(out, 0, sizeof *out);
    out->path = SKV_PATH_MPI;
    snprintf(out->why, sizeof out->why, "not decided (start-up exchange failed)");
    int rank = 0, size = 0;
    SKV_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    SKV_MPI_CHECK(MPI_Comm_size(comm, &size), err);
    char host[MPI_MAX_PROCESSOR_NAME + 1] = "";
    int hlen = 0;
    if (MPI_Get_processor_name(host, &hlen) != MPI_SUCCESS) hlen = 0;
    host[hlen >= 0 && hlen <= MPI_MAX_PROCESSOR_NAME ? hlen : 0] = '\0';
    skv_rank_device mine = {skv_host_hash(host), kind, kind == SKV_RANK_CUDA ? device : -1};

    skv_rank_device *all = NULL;
    if (rank == 0 && !(all = calloc((size_t)size, sizeof *all)))
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d device reports", size);
    const int gathered = MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine,
                                    MPI_BYTE, 0, comm) == MPI_SUCCESS;
    path_msg msg;
    memset(&msg, 0, sizeof msg);
    if (rank == 0) {
        if (gathered) {
            char why[SKV_DATA_PATH_WHY];
            msg.path = skv_data_path_choose(all, size, why, sizeof why);
            if (want == SKV_WANT_XFER_MPI) {
                msg.path = SKV_PATH_XFER_MPI;
                snprintf(msg.why, sizeof msg.why,
                         "--data-path mpi-xfer: the NCCL path's transfers over MPI (a test mode)");
            } else if (msg.path == SKV_PATH_NCCL && want == SKV_WANT_MPI) {
                msg.path = SKV_PATH_MPI;
                snprintf(msg.why, sizeof msg.why, "--data-path mpi; NCCL was possible: %.150s",
                         why);
            } else {
                snprintf(msg.why, sizeof msg.why, "%s", why);
            }
        } else
            snprintf(msg.why, sizeof msg.why, "the ranks' device reports were lost (MPI_Gather)");
        free(all);
    }
    SKV_MPI_CHECK(MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, comm), err);
    if (!gathered) return skv_set_error(err, SKV_ERR_IO, "MPI_Gather of the ranks' devices failed");
    out->path =
        msg.path == SKV_PATH_NCCL || msg.path == SKV_PATH_XFER_MPI ? msg.path : SKV_PATH_MPI;
    snprintf(out->why, sizeof out->why, "%s", msg.why);
    if (out->path != SKV_PATH_NCCL) return SKV_OK;

    skv_err ne = {SKV_OK, ""};
    subkv_status st = skv_nccl_init(comm, &out->nccl, &ne);
    if (st == SKV_ERR_IO) { /* MPI itself broke: the caller cannot go on either way */
        out->path = SKV_PATH_MPI;
        return skv_set_error(err, st, "%s", ne.msg);
    }
    if (st != SKV_OK) { /* agreed on every rank by skv_nccl_init: all fall back together */
        out->path = SKV_PATH_MPI;
        out->nccl = NULL;
        snprintf(out->why, sizeof out->why, "NCCL init failed (%.150s)", ne.msg);
    }
    return SKV_OK;
}

void skv_data_path_stop(skv_data_path *dp) {
    if (!dp) return;
    skv_nccl_destroy(dp->nccl);
    dp->nccl = NULL;
    dp->path = SKV_PATH_MPI;
}
