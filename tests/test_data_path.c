/*
 * test_data_path.c — the MPI-or-NCCL decision (coordinator/data_path.h): NCCL only when
 * every rank, the coordinator included, is on a GPU of its own; otherwise MPI, with the
 * reason naming the rule and the ranks that broke it. Pure function: no MPI, no GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "data_path.h"
#include "test_util.h"

static skv_rank_device gpu(const char *host, int device) {
    skv_rank_device r = {skv_host_hash(host), SKV_RANK_CUDA, device};
    return r;
}

static skv_rank_device cpu(const char *host) {
    skv_rank_device r = {skv_host_hash(host), SKV_RANK_CPU, -1};
    return r;
}

/* Choose, and check the path and that the reason contains want. */
static void expect(const skv_rank_device *ranks, int n, int path, const char *want) {
    char why[192] = "unset";
    int got = skv_data_path_choose(ranks, n, why, sizeof why);
    if (got != path || !strstr(why, want))
        fail_msg("path %s (%s), wanted %s with '%s'", skv_data_path_name(got), why,
                 skv_data_path_name(path), want);
}

static void test_data_path_distinct_gpus_of_one_host_take_nccl(void **state) {
    (void)state;
    const skv_rank_device r[4] = {gpu("node0", 0), gpu("node0", 1), gpu("node0", 2),
                                  gpu("node0", 3)};
    expect(r, 4, SKV_PATH_NCCL, "every rank on a GPU of its own (4 ranks)");
}

static void test_data_path_two_workers_on_one_gpu_take_mpi(void **state) {
    (void)state;
    const skv_rank_device r[4] = {gpu("node0", 1), gpu("node0", 0), gpu("node0", 0),
                                  gpu("node0", 2)};
    expect(r, 4, SKV_PATH_MPI, "ranks 1 and 2 share GPU 0 of one host");
}

static void test_data_path_worker_sharing_the_coordinators_gpu_takes_mpi(void **state) {
    (void)state;
    const skv_rank_device r[3] = {gpu("node0", 0), gpu("node0", 1), gpu("node0", 0)};
    expect(r, 3, SKV_PATH_MPI, "ranks 0 and 2 share GPU 0 of one host");
}

static void test_data_path_cpu_coordinator_takes_mpi(void **state) {
    (void)state;
    const skv_rank_device r[3] = {cpu("node0"), gpu("node0", 0), gpu("node0", 1)};
    char why[192];
    assert_int_equal(skv_data_path_choose(r, 3, why, sizeof why), SKV_PATH_MPI);
    assert_string_equal(why, "rank 0 (the coordinator) has no GPU");
}

/* Today's service: the coordinator and every worker on the CPU. */
static void test_data_path_all_cpu_names_the_coordinator_and_counts_the_rest(void **state) {
    (void)state;
    const skv_rank_device r[3] = {cpu("node0"), cpu("node0"), cpu("node0")};
    char why[192];
    assert_int_equal(skv_data_path_choose(r, 3, why, sizeof why), SKV_PATH_MPI);
    assert_string_equal(why, "rank 0 (the coordinator) and 2 other ranks of 3 have no GPU");
}

static void test_data_path_cpu_worker_among_gpu_ones_takes_mpi(void **state) {
    (void)state;
    const skv_rank_device r[4] = {gpu("node0", 0), gpu("node0", 1), cpu("node0"), gpu("node0", 2)};
    char why[192];
    assert_int_equal(skv_data_path_choose(r, 4, why, sizeof why), SKV_PATH_MPI);
    assert_string_equal(why, "rank 2 has no GPU");
}

/* A rank claiming CUDA without an ordinal is not trusted with NCCL. */
static void test_data_path_cuda_rank_without_ordinal_takes_mpi(void **state) {
    (void)state;
    const skv_rank_device r[2] = {gpu("node0", 0), gpu("node0", -1)};
    expect(r, 2, SKV_PATH_MPI, "rank 1 has no GPU");
}

/* The "no GPU" rule is checked before the sharing rule: both broken, the first is named. */
static void test_data_path_missing_gpu_is_reported_before_sharing(void **state) {
    (void)state;
    const skv_rank_device r[3] = {gpu("node0", 0), gpu("node0", 0), cpu("node1")};
    expect(r, 3, SKV_PATH_MPI, "rank 2 has no GPU");
}

static void test_data_path_same_ordinal_on_two_hosts_takes_nccl(void **state) {
    (void)state;
    const skv_rank_device r[4] = {gpu("node0", 0), gpu("node1", 0), gpu("node0", 1),
                                  gpu("node1", 1)};
    expect(r, 4, SKV_PATH_NCCL, "every rank on a GPU of its own");
}

/* A second host whose ranks collide is still caught, whatever the first host does. */
static void test_data_path_sharing_on_the_second_host_takes_mpi(void **state) {
    (void)state;
    const skv_rank_device r[5] = {gpu("node0", 0), gpu("node0", 1), gpu("node1", 0),
                                  gpu("node0", 2), gpu("node1", 0)};
    expect(r, 5, SKV_PATH_MPI, "ranks 2 and 4 share GPU 0 of one host");
}

/* One rank (no workers) and no ranks at all: nothing to reach, MPI; never a crash. */
static void test_data_path_one_rank_and_none_take_mpi(void **state) {
    (void)state;
    const skv_rank_device one[1] = {gpu("node0", 0)};
    expect(one, 1, SKV_PATH_MPI, "1 rank: no workers to reach");
    expect(NULL, 0, SKV_PATH_MPI, "no ranks");
    expect(one, 0, SKV_PATH_MPI, "no ranks");
    expect(one, -3, SKV_PATH_MPI, "no ranks");
}

/* why is optional and always bounded; the decision does not depend on it. */
static void test_data_path_reason_is_optional_and_truncated(void **state) {
    (void)state;
    const skv_rank_device r[2] = {gpu("node0", 0), gpu("node0", 1)};
    assert_int_equal(skv_data_path_choose(r, 2, NULL, 0), SKV_PATH_NCCL);
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(skv_data_path_choose(r, 2, small, sizeof small), SKV_PATH_NCCL);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(skv_data_path_choose(r, 2, small, 0), SKV_PATH_NCCL);
}

/* FNV-1a 64: the published test vectors, and NULL reads as "". */
static void test_data_path_host_hash_is_fnv1a(void **state) {
    (void)state;
    assert_true(skv_host_hash("") == 0xcbf29ce484222325ull);
    assert_true(skv_host_hash("a") == 0xaf63dc4c8601ec8cull);
    assert_true(skv_host_hash("foobar") == 0x85944171f73967e8ull);
    assert_true(skv_host_hash(NULL) == skv_host_hash(""));
    assert_true(skv_host_hash("node0") != skv_host_hash("node1"));
}

static void test_data_path_names(void **state) {
    (void)state;
    assert_string_equal(skv_data_path_name(SKV_PATH_MPI), "mpi");
    assert_string_equal(skv_data_path_name(SKV_PATH_NCCL), "nccl");
    assert_string_equal(skv_data_path_name(7), "mpi");
}

int main(void) {
    tu_suite_begin("test_data_path");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_path_distinct_gpus_of_one_host_take_nccl),
        cmocka_unit_test(test_data_path_two_workers_on_one_gpu_take_mpi),
        cmocka_unit_test(test_data_path_worker_sharing_the_coordinators_gpu_takes_mpi),
        cmocka_unit_test(test_data_path_cpu_coordinator_takes_mpi),
        cmocka_unit_test(test_data_path_all_cpu_names_the_coordinator_and_counts_the_rest),
        cmocka_unit_test(test_data_path_cpu_worker_among_gpu_ones_takes_mpi),
        cmocka_unit_test(test_data_path_cuda_rank_without_ordinal_takes_mpi),
        cmocka_unit_test(test_data_path_missing_gpu_is_reported_before_sharing),
        cmocka_unit_test(test_data_path_same_ordinal_on_two_hosts_takes_nccl),
        cmocka_unit_test(test_data_path_sharing_on_the_second_host_takes_mpi),
        cmocka_unit_test(test_data_path_one_rank_and_none_take_mpi),
        cmocka_unit_test(test_data_path_reason_is_optional_and_truncated),
        cmocka_unit_test(test_data_path_host_hash_is_fnv1a),
        cmocka_unit_test(test_data_path_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
