/* Tests of cli/cli_adapter.c (`samda adapter`, also the samda-adapter program): exit statuses and
 * messages of its command line, and info on the sam-parity tiny model (tests/data) for what makes a
 * fresh adapter (--labels, --window, --rank, --tokens, --place). Training, evaluation and TTA are
 * model/'s tests (test_adapter) and it_cli_model's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

typedef struct run_result {
    int rc;
    char out[16384], err[16384];
} run_result;

static char g_ckpt[4096], g_config[4096];
static int have_tiny;

static void slurp(FILE *f, char *buf, size_t size)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* cli_adapter_main("adapter", args..., NULL) with stdout and stderr captured. */
static void run(run_result *r, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = strdup("adapter");
    va_list ap;
    va_start(ap, r);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 63;) argv[argc++] = strdup(a);
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    assert_non_null(fo);
    assert_non_null(fe);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    r->rc = cli_adapter_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    slurp(fo, r->out, sizeof r->out);
    slurp(fe, r->err, sizeof r->err);
    for (int i = 0; i < argc; i++) free(argv[i]);
}

#define ASSERT_HAS(text, part)                                                                                  \
    do {                                                                                                        \
        if (!strstr((text), (part))) fail_msg("expected \"%s\" in:\n%s", (part), (text));                       \
    } while (0)

static void test_usage_errors(void **state)
{
    (void)state;
    run_result r;
    run(&r, NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "samda adapter: missing command\nusage: samda adapter COMMAND");
    run(&r, "bogus", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "samda adapter: bogus needs --checkpoint\n");
    run(&r, "info", "stray", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "unexpected argument \"stray\"");
    run(&r, "info", "--nope=1", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "samda adapter: unknown option --nope\n");
    run(&r, "info", "--checkpoint", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--checkpoint needs a value");
    run(&r, "info", "--seed", "x", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--seed must be an unsigned integer");
    run(&r, "pretrain", "--data", "/d", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "pretrain needs --config, --data and --out");
    assert_string_equal(r.out, "");
}

static void test_help(void **state)
{
    (void)state;
    run_result r;
    const char *const forms[][2] = {{"--help", NULL}, {"help", NULL}, {"info", "--help"}};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        run(&r, forms[i][0], forms[i][1], NULL);
        assert_int_equal(r.rc, CLI_EXIT_OK);
        assert_int_equal(strncmp(r.out, "usage: samda adapter COMMAND [options]\n", 39), 0);
        assert_string_equal(r.err, "");
    }
}

static void test_missing_checkpoint(void **state)
{
    (void)state;
    run_result r;
    run(&r, "info", "--checkpoint", "/nonexistent.pth", "--device", "cpu", NULL);
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
    ASSERT_HAS(r.err, "/nonexistent.pth");
    run(&r, "train", "--checkpoint=/nonexistent.pth", "--epochs", "x", NULL); /* the checkpoint is opened first */
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
}

#define TINY "--checkpoint", g_ckpt, "--config", g_config, "--device", "cpu", "--threads", "1"

static void test_info_fresh(void **state)
{
    (void)state;
    if (!have_tiny) skip();
    run_result r;
    run(&r, "info", TINY, NULL);
    assert_int_equal(r.rc, CLI_EXIT_OK);
    ASSERT_HAS(r.out, "{\"base\":{\"arch\":\"");
    ASSERT_HAS(r.out, "\"rank\":16,\"tokens\":4,");
    ASSERT_HAS(r.out, "\"placement\":127,\"labels\":4,");
    ASSERT_HAS(r.out, " \"labels\":[\"liver\",\"kidney\",\"spleen\",\"aorta\"],\n \"provenance\":null}\n");

    run(&r, "info", TINY, "--labels", "spleen,inferior_vena_cava", "--rank=4", "--tokens", "2", "--window", "40,350",
        "--place", "mlp,embed", NULL);
    assert_int_equal(r.rc, CLI_EXIT_OK);
    ASSERT_HAS(r.out, "\"rank\":4,\"tokens\":2,");
    ASSERT_HAS(r.out, "\"placement\":68,\"labels\":2,"); /* MLP 0x04 | EMBED 0x40 */
    ASSERT_HAS(r.out, "[\"spleen\",\"inferior_vena_cava\"]");
    run(&r, "info", TINY, "--place", "all", NULL);
    assert_int_equal(r.rc, CLI_EXIT_OK);
    ASSERT_HAS(r.out, "\"placement\":127,");
}

/* --labels-file: a schema with a label the code has never seen; its errors name file, entry, field. */
static void test_labels_file(void **state)
{
    (void)state;
    if (!have_tiny) skip();
    char path[] = "/tmp/samda-test-schema-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char schema[] =
        "[{\"name\":\"lesion\",\"value\":1,\"category\":{\"scheme\":\"SCT\",\"code\":\"49755003\",\"meaning\":"
        "\"Morphologically Abnormal Structure\"},\"type\":{\"scheme\":\"SCT\",\"code\":\"52988006\",\"meaning\":"
        "\"Lesion\"},\"region\":{\"scheme\":\"SCT\",\"code\":\"10200004\",\"meaning\":\"Liver\"},\"rgb\":[200,16,46],"
        "\"window\":{\"kind\":\"ct\",\"level\":60,\"width\":300}},"
        "{\"name\":\"prostate\",\"value\":2,\"category\":{\"scheme\":\"SCT\",\"code\":\"123037004\",\"meaning\":"
        "\"Anatomical Structure\"},\"type\":{\"scheme\":\"SCT\",\"code\":\"41216001\",\"meaning\":\"Prostate\"},"
        "\"rgb\":[230,158,140],\"window\":{\"kind\":\"mr\",\"low_percentile\":1,\"high_percentile\":99}}]";
    assert_int_equal(write(fd, schema, sizeof schema - 1), (int)(sizeof schema - 1));
    close(fd);
    run_result r;
    run(&r, "info", TINY, "--labels-file", path, NULL);
    assert_int_equal(r.rc, CLI_EXIT_OK);
    ASSERT_HAS(r.out, "\"labels\":2,");
    ASSERT_HAS(r.out, "[\"lesion\",\"prostate\"]");
    run(&r, "info", TINY, "--labels-file", path, "--labels", "liver", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--labels and --labels-file exclude each other");
    run(&r, "info", TINY, "--labels", "from_segs", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--labels from_segs needs --dicom SERIES,SEG");
    /* the second label without its type code */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[{\"name\":\"a\",\"value\":1,\"category\":{\"scheme\":\"SCT\",\"code\":\"1\",\"meaning\":\"c\"},\"type\":"
          "{\"scheme\":\"SCT\",\"code\":\"2\",\"meaning\":\"t\"},\"rgb\":[1,2,3],\"window\":{\"kind\":\"ct\",\"level\":0,"
          "\"width\":1}},{\"name\":\"b\",\"value\":2,\"category\":{\"scheme\":\"SCT\",\"code\":\"1\",\"meaning\":\"c\"},"
          "\"type\":{\"scheme\":\"SCT\",\"meaning\":\"t\"}}]", f);
    fclose(f);
    run(&r, "info", TINY, "--labels-file", path, NULL);
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
    char want[256];
    snprintf(want, sizeof want, "%s: labels[1] (b).type.code: missing or not a string", path);
    ASSERT_HAS(r.err, want);
    unlink(path);
    run(&r, "info", TINY, "--labels-file", path, NULL);
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
    ASSERT_HAS(r.err, "No such file");
}

static void test_info_refused(void **state)
{
    (void)state;
    if (!have_tiny) skip();
    static const struct {
        const char *flag, *value, *message;
    } cases[] = {
        {"--labels", "liver,bogus", "unknown label \"bogus\" (known: liver, kidney, spleen, aorta, inferior_vena_cava)"},
        {"--labels", "liver,", "unknown label \"\""},
        {"--place", "mlp,nope", "--place: unknown part \"nope\" (all, or a list of"},
        {"--place", "", "--place: unknown part \"\""},
        {"--window", "50", "--window must be LEVEL,WIDTH (HU)"},
        {"--window", ",400", "--window must be LEVEL,WIDTH (HU)"},
        {"--window", "50,0", "--window must be LEVEL,WIDTH (HU)"},
        {"--window", "6000,400", "--window must be LEVEL,WIDTH (HU)"},
        {"--rank", "0", "--rank must be a number in 1..256"},
        {"--tokens", "65", "--tokens must be a number in 1..64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r;
        run(&r, "info", TINY, cases[i].flag, cases[i].value, NULL);
        if (r.rc != CLI_EXIT_USAGE) fail_msg("%s %s: exit %d", cases[i].flag, cases[i].value, r.rc);
        ASSERT_HAS(r.err, cases[i].message);
        assert_string_equal(r.out, "");
    }
}

static void test_commands_refused(void **state)
{
    (void)state;
    if (!have_tiny) skip();
    run_result r;
    run(&r, "tta", TINY, "--data", "/d", "--out", "/o", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "tta needs --adapter, --data and --out");
    run(&r, "eval", TINY, "--data", "/d", "--prompt", "point", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--prompt must be free or box");
    run(&r, "eval", TINY, "--data", "/d", "--max-cases", "-1", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--max-cases must be 0..10000000");
    run(&r, "train", TINY, "--data", "/d", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "train needs --data and --out");
    run(&r, "train", TINY, "--data", "/d", "--out", "/o", "--scope", "all", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--scope must be adapter, decoder or full");
    run(&r, "train", TINY, "--data", "/d", "--out", "/o", "--lr", "2", NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "--lr must be a number in 1e-9..1.0");
    run(&r, "frobnicate", TINY, NULL);
    assert_int_equal(r.rc, CLI_EXIT_USAGE);
    ASSERT_HAS(r.err, "unknown command \"frobnicate\"");
    run(&r, "eval", TINY, "--data", "/nonexistent-data", NULL);
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
    ASSERT_HAS(r.err, "/nonexistent-data");
    run(&r, "info", TINY, "--adapter", "/nonexistent.safetensors", NULL);
    assert_int_equal(r.rc, CLI_EXIT_FAIL);
    ASSERT_HAS(r.err, "/nonexistent.safetensors");
}

int main(void)
{
    const char *fx = getenv("SAMDA_FIXTURES");
    struct stat st;
    snprintf(g_ckpt, sizeof g_ckpt, "%s/sam-parity/tiny/weights.pth", fx ? fx : "");
    snprintf(g_config, sizeof g_config, "%s/sam-parity/tiny/config.json", fx ? fx : "");
    have_tiny = fx && stat(g_ckpt, &st) == 0 && stat(g_config, &st) == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),    cmocka_unit_test(test_help),
        cmocka_unit_test(test_missing_checkpoint), cmocka_unit_test(test_info_fresh),
        cmocka_unit_test(test_info_refused),    cmocka_unit_test(test_labels_file),    cmocka_unit_test(test_commands_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
