/* daemon/config.c: the option table, its parser's messages, overrides, reload merge, and the
 * generated example file kept in step with the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "storage.h"

static char tmpdir[] = "/tmp/samda-test-config-XXXXXX";

#include "config_test_util.h"

static void test_defaults(void **state)
{
    (void)state;
    samda_error err;
    samda_config *c = samda_config_load(NULL, NULL, &err);
    assert_non_null(c);
    assert_string_equal(c->data_dir, "/var/lib/samda");
    assert_int_equal(c->dicom_port, 11112);
    assert_string_equal(c->dicom_ae_title, "SAMDA");
    assert_string_equal(c->dicom_bind, "127.0.0.1");
    assert_string_equal(c->http_bind, "127.0.0.1");
    assert_int_equal(c->http_port, 8080);
    assert_true(c->http_auth);
    assert_false(c->dicom_allow_any_peer);
    assert_int_equal(c->storage_min_free_bytes, 2ull << 30);
    assert_null(c->model_checkpoint);
    assert_int_equal(c->n_sites, 1); /* the implicit [site default] */
    assert_non_null(samda_config_site(c, "default"));
    samda_config_unref(c);
}

static void test_errors_name_line_and_rule(void **state)
{
    (void)state;
    expect_error("[dicom]\nport = 70000\n", ":2: [dicom] port = 70000: must be between 1 and 65535");
    expect_error("[dicom]\nport = 12x\n", ":2: [dicom] port = 12x: not an integer");
    expect_error("\n[dicom]\nprot = 1\n", ":3: [dicom] prot: unknown key (did you mean 'port'?)");
    expect_error("[dicomm]\nport = 1\n",
                 ":2: [dicomm]: unknown section (known: daemon, dicom, http, storage, model, scheduler, routing, site NAME, "
                 "peer NAME, destination NAME, rule NAME)");
    expect_error("[http]\nauth = maybe\n", ":2: [http] auth = maybe: must be true or false");
    expect_error("[storage]\nmin_free = 2 parsecs\n",
                 ":2: [storage] min_free = 2 parsecs: not a size (examples: 4096, 512MiB, 2GiB)");
    expect_error("[storage]\nmin_free = 2TiB\n", ":2: [storage] min_free = 2TiB: must be between 0..1TiB");
    expect_error("[storage]\nduplicates = keep\n",
                 ":2: [storage] duplicates = keep: must be one of ignore|overwrite|reject");
    expect_error("[dicom]\nae_title = THIS_IS_LONGER_THAN_16\n",
                 ":2: [dicom] ae_title = THIS_IS_LONGER_THAN_16: not a valid AE title (1-16 printable ASCII "
                 "characters, no backslash)");
    expect_error("[dicom]\nport = 1\nport = 2\n", ":3: [dicom] port set twice (first at line 2)");
    expect_error("[scheduler]\ntick = soon\n",
                 ":2: [scheduler] tick = soon: not a duration (examples: 30s, 2m, 1h, 500ms)");
    expect_error("this is not ini\n", ":1: syntax error (expected [section] or key = value)");
    expect_error("[site a]\nmin_slices = 2\n[site a]\nmin_slices = 3\n", ":3: [site a] defined twice (first at line 1)");
    expect_error("[site a/b]\nmin_slices = 2\n",
                 ":2: [site a/b]: name \"a/b\" must be 1-63 letters, digits, '-', '_' or '.'");
    expect_error("[site a]\ndestinations = nowhere\n", ":1: [site a] destinations: no [destination nowhere] section");
    expect_error("[peer x]\nhost = 10.0.0.1\n", ":1: [peer x]: ae_title is required");
    expect_error("[peer x]\nae_title = X\nsite = nope\n", ":1: [peer x] site = nope: no [site nope] section");
    expect_error("[http]\ntls_key = k.pem\n", ": [http] tls_cert and tls_key must be set together");
    /* destinations: DICOM (ae_title, host) or STOW-RS (url), never half of each */
    expect_error("[destination d]\nhost = pacs\n", ":1: [destination d]: ae_title and host are required (or url, for STOW-RS)");
    expect_error("[destination d]\nurl = ftp://pacs/x\n",
                 ":1: [destination d] url: the URL must start with http:// or https://");
    expect_error("[destination d]\nurl = https://u:p@pacs/x\n",
                 ":1: [destination d] url: user information in the URL is not allowed (use username and secret_file)");
    expect_error("[destination d]\nurl = https://pacs/x\nae_title = PACS\n",
                 ":1: [destination d]: url makes it a STOW-RS destination: remove ae_title, host and tls (https in the url "
                 "is what turns TLS on)");
    expect_error("[destination d]\nurl = https://pacs/x\nauth = bearer\n", ":1: [destination d]: auth = bearer needs secret_file");
    expect_error("[destination d]\nurl = https://pacs/x\nauth = basic\nsecret_file = /s\n",
                 ":1: [destination d]: username goes with auth = basic, and auth = basic needs it");
    expect_error("[destination d]\nurl = http://pacs/x\ntls_ca_file = /ca.pem\n",
                 ":1: [destination d]: tls_ca_file and tls_ca_dir verify an https url; this url is http");
    expect_error("[destination d]\nae_title = P\nhost = h\nauth = bearer\n",
                 ":1: [destination d]: auth, username and secret_file are for STOW-RS destinations (url)");
    /* a sensitive value never appears in a message */
    expect_error("[http]\ntls_key = /k\\x\n[http]\ntls_key = 2\n", ":4: [http] tls_key set twice (first at line 2)");
    char longline[1500];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "[dicom]\nae_title = ", 19);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    const char *p = write_conf("long.conf", longline);
    samda_error err;
    assert_null(samda_config_load(p, NULL, &err));
    assert_non_null(strstr(err.message, ":2: line longer than 198 characters (inih's limit): shorten it"));
}

static void test_missing_file(void **state)
{
    (void)state;
    samda_error err;
    assert_null(samda_config_load("/nonexistent/samdad.conf", NULL, &err));
    assert_int_equal(err.code, SAMDA_ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/samdad.conf"));
}

static void note(void *ctx, const char *sec, const char *key);

static void test_sites_overrides_and_paths(void **state)
{
    (void)state;
    const char *p = write_conf("good.conf",
                               "; comment\n[daemon]\ndata_dir = data\n"
                               "[site neuro]\ncalled_ae = SAMDA_NEURO\ncalling_ae = MRI1, MRI2\nmodalities = MR\n"
                               "series_idle = 2s\ntta = episodic\ndestinations = pacs\n"
                               "[destination pacs]\nae_title = ORTHANC\nhost = 127.0.0.1\nport = 4242\n"
                               "[peer mri1]\nae_title = MRI1\nhost = 10.1.2.3\n");
    const char *sets[] = {"dicom.port=11113", "site.neuro.min_slices=5", "site.ct.modalities=CT", NULL};
    samda_error err;
    samda_config *c = samda_config_load(p, sets, &err);
    if (!c) fail_msg("%s", err.message);
    char want[600];
    snprintf(want, sizeof want, "%s/data", tmpdir);
    assert_string_equal(c->data_dir, want); /* relative to the file's folder */
    assert_int_equal(c->dicom_port, 11113);
    assert_int_equal(c->n_sites, 3); /* neuro, ct (from --set) and the implicit default */
    const samda_site_cfg *s = samda_config_site(c, "neuro");
    assert_non_null(s);
    assert_int_equal(s->min_slices, 5);
    assert_int_equal(s->series_idle_ms, 2000);
    assert_int_equal(s->tta, SAMDA_CFG_TTA_EPISODIC);
    assert_int_equal(s->calling_ae.n, 2);
    assert_string_equal(s->calling_ae.v[1], "MRI2");
    assert_ptr_equal(samda_config_site_for(c, "MRI2", "SAMDA"), s);
    assert_ptr_equal(samda_config_site_for(c, "OTHER", "SAMDA_NEURO"), s);
    assert_null(samda_config_site_for(c, "OTHER", "SAMDA"));
    assert_non_null(samda_config_site(c, "ct"));
    assert_int_equal(samda_config_dest(c, "pacs")->port, 4242);
    assert_string_equal(c->peers[0].host, "10.1.2.3");

    /* reload: restart-only options keep their running values and are reported */
    const char *sets2[] = {"dicom.port=2000", "daemon.log_level=debug", NULL};
    samda_config *next = samda_config_load(p, sets2, &err);
    assert_non_null(next);
    int noted = 0;
    assert_int_equal(samda_config_merge_reload(next, c, note, &noted, &err), SAMDA_OK);
    assert_int_equal(noted, 1);
    assert_int_equal(next->dicom_port, 11113);
    assert_int_equal(next->log_level, 3);
    samda_config_unref(next);
    samda_config_unref(c);
}

static void note(void *ctx, const char *sec, const char *key)
{
    assert_string_equal(sec, "dicom");
    assert_string_equal(key, "port");
    (*(int *)ctx)++;
}

/* Every option survives print -> parse -> print unchanged (redis's "CONFIG sanity"). */
static void test_effective_round_trip(void **state)
{
    (void)state;
    const char *p = write_conf("rt.conf", "[site a]\ncalling_ae = X\n[destination d]\nae_title = D\nhost = h\n"
                                          "[peer p]\nae_title = P\nsite = a\n[http]\ncors_origin = https://v\n");
    samda_error err;
    samda_config *c = samda_config_load(p, NULL, &err);
    assert_non_null(c);
    char *out1 = NULL, *out2 = NULL;
    size_t n1, n2;
    FILE *f = open_memstream(&out1, &n1);
    samda_config_write_effective(c, f);
    fclose(f);
    /* drop the first line (names the source file) */
    const char *p2 = write_conf("rt2.conf", strchr(out1, '\n') + 1);
    samda_config *c2 = samda_config_load(p2, NULL, &err);
    if (!c2) fail_msg("%s", err.message);
    f = open_memstream(&out2, &n2);
    samda_config_write_effective(c2, f);
    fclose(f);
    assert_string_equal(strchr(out1, '\n'), strchr(out2, '\n'));
    free(out1);
    free(out2);
    samda_config_unref(c);
    samda_config_unref(c2);
}

/* deploy/samdad.conf.example is generated from the table; it must match, and it must parse
 * (everything commented out means: all defaults). */
static void test_example_in_step(void **state)
{
    (void)state;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    if (!src) skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/deploy/samdad.conf.example", src);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *committed = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&committed, &cap, '\0', f);
    fclose(f);
    assert_true(n > 0);
    char *gen = NULL;
    size_t gn;
    f = open_memstream(&gen, &gn);
    samda_config_write_example(f);
    fclose(f);
    if (strcmp(committed, gen) != 0)
        fail_msg("deploy/samdad.conf.example is out of date: regenerate it with "
                 "`build/daemon/samdad --print-config-example > deploy/samdad.conf.example`");
    samda_error err;
    samda_config *c = samda_config_load(path, NULL, &err);
    if (!c) fail_msg("%s", err.message);
    samda_config_unref(c);
    free(committed);
    free(gen);
}

static void test_value_parsers(void **state)
{
    (void)state;
    uint64_t b;
    assert_true(samda_parse_size("4096", &b) && b == 4096);
    assert_true(samda_parse_size("2GiB", &b) && b == 2147483648ull);
    assert_true(samda_parse_size("512 MB", &b) && b == 512000000ull);
    assert_false(samda_parse_size("-1", &b));
    assert_false(samda_parse_size("99999999999999999999", &b));
    assert_false(samda_parse_size("20000000000TiB", &b));
    int64_t ms;
    assert_true(samda_parse_duration("30", &ms) && ms == 30000);
    assert_true(samda_parse_duration("500ms", &ms) && ms == 500);
    assert_true(samda_parse_duration("1.5h", &ms) && ms == 5400000);
    assert_false(samda_parse_duration("5 fortnights", &ms));
    assert_true(samda_ae_title_is_valid("SAMDA"));
    assert_true(samda_ae_title_is_valid("ORTHANC 1"));
    assert_false(samda_ae_title_is_valid(""));
    assert_false(samda_ae_title_is_valid("    "));
    assert_false(samda_ae_title_is_valid("A\\B"));
    assert_false(samda_ae_title_is_valid("ABCDEFGHIJKLMNOPQ"));
    assert_false(samda_ae_title_is_valid("TAB\tX"));
}

/* DICOM TLS keys of [dicom] (the listener) and [destination] (the exporter's client): complete, readable,
 * key matching its certificate (samda_dicom_tls_check loads them as the listener will), errors at the
 * key's line; restart-only for the listener, reloaded for destinations; --print-config shows paths,
 * never key material. The test PKI is made with the openssl command. */
static void tls_reload_note(void *ctx, const char *sec, const char *key)
{
    assert_string_equal(sec, "dicom");
    assert_non_null(strstr(key, "tls"));
    (*(int *)ctx)++;
}

static void test_dicom_tls_keys(void **state)
{
    (void)state;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=ca && "
             "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 && "
             "openssl genrsa -out other.key 2048 && mkdir -p cadir && echo 'not a certificate' > junk.pem; } "
             ">/dev/null 2>&1",
             tmpdir);
    if (system(cmd) != 0) fail_msg("making the test PKI with openssl failed: %s", cmd);
    const char *t = tmpdir;
    char want[1200];

    /* a complete listener: relative paths from the file's folder, client certificates required */
    const char *p = write_conf("tls.conf", "[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = srv.key\n"
                                           "tls_ca_file = ca.crt\n"
                                           "[destination pacs]\nae_title = PACS\nhost = h\ntls = true\n"
                                           "tls_ca_dir = cadir\ntls_cert = srv.crt\ntls_key = srv.key\n"
                                           "[destination plain]\nae_title = P\nhost = h\n");
    samda_error err;
    samda_config *c = samda_config_load(p, NULL, &err);
    if (!c) fail_msg("%s", err.message);
    assert_true(c->dicom_tls);
    assert_true(c->dicom_tls_require_client_cert);
    snprintf(want, sizeof want, "%s/srv.key", t);
    assert_string_equal(c->dicom_tls_key, want);
    const samda_dest_cfg *d = samda_config_dest(c, "pacs");
    assert_true(d->tls);
    snprintf(want, sizeof want, "%s/cadir", t);
    assert_string_equal(d->tls_ca_dir, want);
    assert_false(samda_config_dest(c, "plain")->tls);
    /* --print-config: the key's path, never its content */
    char *out = NULL;
    size_t n;
    FILE *f = open_memstream(&out, &n);
    samda_config_write_effective(c, f);
    fclose(f);
    snprintf(want, sizeof want, "\ntls_key = %s/srv.key\n", t);
    assert_non_null(strstr(out, want));
    assert_null(strstr(out, "PRIVATE KEY"));
    assert_null(strstr(out, "-----BEGIN"));
    free(out);

    /* reload: the listener's TLS keys are restart-only (reported), a destination's apply at once */
    const char *sets[] = {"dicom.tls_require_client_cert=false", "destination.pacs.tls=false",
                          "destination.pacs.tls_ca_dir=", "destination.pacs.tls_cert=", "destination.pacs.tls_key=",
                          NULL};
    samda_config *next = samda_config_load(p, sets, &err);
    if (!next) fail_msg("%s", err.message);
    int noted = 0;
    assert_int_equal(samda_config_merge_reload(next, c, tls_reload_note, &noted, &err), SAMDA_OK);
    assert_int_equal(noted, 1);
    assert_true(next->dicom_tls_require_client_cert); /* kept until a restart */
    assert_false(samda_config_dest(next, "pacs")->tls); /* applied */
    samda_config_unref(next);
    samda_config_unref(c);

    /* listener: each rule at the line of the key to fix */
    expect_error("[dicom]\ntls = true\ntls_ca_file = ca.crt\n",
                 ":2: [dicom] tls = true: needs tls_cert and tls_key (the certificate and private key the listener "
                 "presents)");
    expect_error("[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = srv.key\n",
                 ":2: [dicom] tls = true: needs tls_ca_file or tls_ca_dir (the CA certificates trusted to sign the "
                 "senders' client certificates)");
    char suffix[1200];
    snprintf(suffix, sizeof suffix,
             ":4: [dicom] tls_key = %s/other.key: private key %s/other.key does not match certificate %s/srv.crt", t, t,
             t);
    expect_error("[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = other.key\ntls_ca_file = ca.crt\n", suffix);
    snprintf(suffix, sizeof suffix, ":5: [dicom] tls_ca_file = %s/missing.crt: cannot be read: No such file or directory",
             t);
    expect_error("[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = srv.key\ntls_ca_file = missing.crt\n", suffix);
    snprintf(suffix, sizeof suffix, ":5: [dicom] tls_ca_dir = %s/ca.crt: not a directory", t);
    expect_error("[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = srv.key\ntls_ca_dir = ca.crt\n", suffix);
    snprintf(suffix, sizeof suffix,
             ":2: [dicom] tls_cert = %s/srv.crt: tls is not true, so it would not be used: set tls = true or remove "
             "tls_cert",
             t);
    expect_error("[dicom]\ntls_cert = srv.crt\n", suffix);
    /* a CA file that is not PEM: DCMTK's reason follows the rule */
    p = write_conf("junk.conf", "[dicom]\ntls = true\ntls_cert = srv.crt\ntls_key = srv.key\ntls_ca_file = junk.pem\n");
    assert_null(samda_config_load(p, NULL, &err));
    snprintf(want, sizeof want, "%s:5: [dicom] tls_ca_file = %s/junk.pem: cannot load CA file %s/junk.pem (PEM)", p, t, t);
    if (strncmp(err.message, want, strlen(want)) != 0) fail_msg("got: %s\nwant: %s...", err.message, want);

    /* destination: a CA is needed, a client certificate is optional but comes with its key */
    expect_error("[destination pacs]\nae_title = PACS\nhost = h\ntls = true\n",
                 ":4: [destination pacs] tls = true: needs tls_ca_file or tls_ca_dir (the CA certificates trusted to "
                 "sign the destination's certificate)");
    snprintf(suffix, sizeof suffix,
             ":6: [destination pacs] tls_cert = %s/srv.crt: tls_key must be set with it (a certificate and its "
             "private key go together)",
             t);
    expect_error("[destination pacs]\nae_title = PACS\nhost = h\ntls = true\ntls_ca_file = ca.crt\ntls_cert = srv.crt\n",
                 suffix);
    snprintf(suffix, sizeof suffix,
             ":7: [destination pacs] tls_key = %s/other.key: private key %s/other.key does not match certificate "
             "%s/srv.crt",
             t, t, t);
    expect_error("[destination pacs]\nae_title = PACS\nhost = h\ntls = true\ntls_ca_file = ca.crt\ntls_cert = srv.crt\n"
                 "tls_key = other.key\n[destination b]\nae_title = B\nhost = h\n",
                 suffix);
    snprintf(suffix, sizeof suffix,
             ":9: [destination b] tls_ca_file = %s/ca.crt: tls is not true, so it would not be used: set tls = true "
             "or remove tls_ca_file",
             t);
    expect_error("[destination a]\nae_title = A\nhost = h\ntls = true\ntls_ca_file = ca.crt\n"
                 "[destination b]\nae_title = B\nhost = h\ntls_ca_file = ca.crt\n",
                 suffix);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void convention_note(void *ctx, const char *sec, const char *key)
{
    assert_string_equal(sec, "model");
    assert_string_equal(key, "convention");
    (*(int *)ctx)++;
}

/* [model] convention (issue 15): sam by default, medsam accepted (any case), anything else refused at
 * file:line with the choices; a reload keeps the running value and names it (restart only). */
static void test_model_convention(void **state)
{
    (void)state;
    samda_error err;
    samda_config *c = samda_config_load(NULL, NULL, &err);
    assert_non_null(c);
    assert_int_equal(c->model_convention, SAMDA_CFG_CONVENTION_SAM);
    samda_config_unref(c);
    const char *p = write_conf("medsam.conf", "[model]\nconvention = MedSAM\n");
    c = samda_config_load(p, NULL, &err);
    if (!c) fail_msg("%s", err.message);
    assert_int_equal(c->model_convention, SAMDA_CFG_CONVENTION_MEDSAM);
    char *out = NULL;
    size_t n;
    FILE *f = open_memstream(&out, &n);
    samda_config_write_effective(c, f);
    fclose(f);
    assert_non_null(strstr(out, "convention = medsam"));
    free(out);
    const char *sets[] = {"model.convention=sam", NULL};
    samda_config *next = samda_config_load(p, sets, &err);
    assert_non_null(next);
    assert_int_equal(next->model_convention, SAMDA_CFG_CONVENTION_SAM);
    int noted = 0;
    assert_int_equal(samda_config_merge_reload(next, c, convention_note, &noted, &err), SAMDA_OK);
    assert_int_equal(noted, 1);
    assert_int_equal(next->model_convention, SAMDA_CFG_CONVENTION_MEDSAM);
    samda_config_unref(next);
    samda_config_unref(c);
    expect_error("[model]\ndevice = cpu\nconvention = vit\n", ":3: [model] convention = vit: must be one of sam|medsam");
}

/* [routing] and [rule NAME]: rules load in file order with their choices; every mistake is refused
 * at its line, an expression's at its column too; SIGHUP's reload takes a new rule set whole. */
static void test_routing_rules(void **state)
{
    (void)state;
    const char *ok_text =
        "[destination pacs]\nae_title = PACS\nhost = 127.0.0.1\n"
        "[destination web]\nurl = http://127.0.0.1:8042/dicom-web\n"
        "[site liver]\nmodalities = CT\n"
        "[routing]\nmode = all\nunmatched = skip\noff_peak = 22:30-05:00\n"
        "[rule arterial]\nmatch = Modality = CT and SeriesDescription like \"*ART*\"\nsite = liver\n"
        "labels = liver, spleen\noutputs = seg,rtstruct,sr\ndestinations = pacs,web\npriority = urgent\n"
        "requires = SeriesDescription like \"*VEN*\", Rows in (256, 512)\nrequires_timeout = 30m\n"
        "[rule thin]\nmatch = SliceThickness <= 1.5\npriority = off-peak\n";
    samda_error err;
    samda_config *c = samda_config_load(write_conf("ok.conf", ok_text), NULL, &err);
    if (!c) fail_msg("%s", err.message);
    assert_int_equal(c->route_mode, SAMDA_CFG_ROUTE_ALL);
    assert_int_equal(c->route_unmatched, SAMDA_CFG_UNMATCHED_SKIP);
    int a, b;
    assert_true(samda_parse_window(c->route_off_peak, &a, &b));
    assert_int_equal(a, 22 * 60 + 30);
    assert_int_equal(b, 5 * 60);
    assert_int_equal(c->n_rules, 2);
    assert_string_equal(c->rules[0].name, "arterial");
    assert_string_equal(c->rules[1].name, "thin");
    const samda_rule_cfg *r = samda_config_rule(c, "arterial");
    assert_non_null(r);
    assert_string_equal(r->site, "liver");
    assert_int_equal(r->labels.n, 2);
    assert_string_equal(r->labels.v[1], "spleen");
    assert_int_equal(samda_outputs_of(&r->outputs), SAMDA_OUTPUT_SEG | SAMDA_OUTPUT_RTSTRUCT | SAMDA_OUTPUT_SR);
    assert_int_equal(r->destinations.n, 2);
    assert_int_equal(r->priority, SAMDA_CFG_PRIORITY_URGENT);
    assert_int_equal(r->requires_timeout_ms, 30 * 60000);
    assert_int_equal(samda_config_rule(c, "thin")->priority, SAMDA_CFG_PRIORITY_OFF_PEAK);
    assert_int_equal(samda_config_rule(c, "thin")->outputs.n, 0); /* the site's */
    assert_null(samda_config_rule(c, "thin")->site);
    samda_config_unref(c);
    /* defaults: first match, the site decides the rest, 20:00-06:00 */
    c = samda_config_load(NULL, NULL, &err);
    assert_int_equal(c->route_mode, SAMDA_CFG_ROUTE_FIRST);
    assert_int_equal(c->route_unmatched, SAMDA_CFG_UNMATCHED_SITE);
    assert_string_equal(c->route_off_peak, "20:00-06:00");
    assert_int_equal(c->n_rules, 0);
    samda_config_unref(c);

    expect_error("[rule r]\nmatch = Modality = CT and Foo = 1\n",
                 ":2: [rule r] match = Modality = CT and Foo = 1: column 19: unknown attribute 'Foo' (known: Modality, "
                 "BodyPartExamined, SeriesDescription, StudyDescription, CallingAETitle, CalledAETitle, SliceThickness, "
                 "Rows, Columns, SeriesNumber, NumberOfSeriesRelatedInstances)");
    expect_error("[rule r]\npriority = urgent\n\nmatch = SeriesDescription like\n",
                 ":4: [rule r] match = SeriesDescription like: column 23: a value (a number, a word or \"quoted text\") "
                 "must follow");
    expect_error("[rule r]\npriority = urgent\n", ":1: [rule r]: match is required (for example match = Modality = CT)");
    expect_error("[rule r]\nmatch = Modality = CT\nrequires = Rows = 1, Rows <\n",
                 ":3: [rule r] requires = Rows <: column 7: a value (a number, a word or \"quoted text\") must follow");
    expect_error("[rule r]\nmatch = Modality = CT\nsite = nowhere\n", ":3: [rule r] site = nowhere: no [site nowhere] section");
    expect_error("[rule r]\nmatch = Modality = CT\ndestinations = pacs\n",
                 ":3: [rule r] destinations: no [destination pacs] section");
    expect_error("[rule r]\nmatch = Modality = CT\noutputs = sr\n",
                 ":3: [rule r] outputs: sr references the DICOM-SEG's segments, so it needs seg too (outputs = seg,sr)");
    expect_error("[rule r]\nmatch = Modality = CT\noutputs = seg,pdf\n", ":3: [rule r] outputs = pdf: must be among seg|rtstruct|sr");
    expect_error("[rule r]\nmatch = Modality = CT\npriority = asap\n",
                 ":3: [rule r] priority = asap: must be one of normal|urgent|off-peak");
    expect_error("[rule r]\nmatch = Modality = CT\nlabels = liver, ../x\n",
                 ":3: [rule r] labels: '../x' is not a label name (1-63 letters, digits, '-', '_' or '.')");
    expect_error("[routing]\nmode = some\n", ":2: [routing] mode = some: must be one of first|all");
    expect_error("[routing]\n\noff_peak = 25:00-06:00\n",
                 ":3: [routing] off_peak = 25:00-06:00: must be a local-time window HH:MM-HH:MM, e.g. 20:00-06:00");
    expect_error("[rule a]\nmatch = Rows = 1\n[rule a]\nmatch = Rows = 2\n", ":3: [rule a] defined twice (first at line 1)");

    /* a section written without keys exists, with the table's defaults */
    c = samda_config_load(write_conf("empty.conf", "[site liver]\n\n[rule r]\nmatch = Rows = 1\nsite = liver\n"
                                                    "[destination web]\n[site liver]\n"),
                          NULL, &err);
    assert_null(c);
    assert_non_null(strstr(err.message, "[destination web]: ae_title and host are required"));
    c = samda_config_load(write_conf("empty.conf", "[site liver]\n\n[rule r]\nmatch = Rows = 1\nsite = liver\n"), NULL,
                          &err);
    if (!c) fail_msg("%s", err.message);
    assert_non_null(samda_config_site(c, "liver"));
    assert_int_equal(samda_config_site(c, "liver")->min_slices, 1);
    assert_int_equal(samda_config_site(c, "liver")->line, 1);
    samda_config_unref(c);
    expect_error("[daemon]\nlog_level = info\n[site bad/name]\n",
                 ":3: [site bad/name]: name \"bad/name\" must be 1-63 letters, digits, '-', '_' or '.'");

    /* a reload takes the new rule set as a whole */
    c = samda_config_load(write_conf("r1.conf", "[rule a]\nmatch = Rows = 1\n[rule b]\nmatch = Rows = 2\n"), NULL, &err);
    samda_config *next = samda_config_load(write_conf("r2.conf", "[rule b]\nmatch = Rows = 3\n"), NULL, &err);
    assert_non_null(c);
    assert_non_null(next);
    assert_int_equal(samda_config_merge_reload(next, c, NULL, NULL, &err), SAMDA_OK);
    assert_int_equal(next->n_rules, 1);
    assert_string_equal(next->rules[0].match, "Rows = 3");
    samda_config_unref(c);
    samda_config_unref(next);
}

/* [storage] index and [cluster]: defaults, the connection string needed and never shown, node names
 * checked, roles as bits, a change of roles noted as needing a restart. */
static void roles_note(void *ctx, const char *sec, const char *key)
{
    assert_string_equal(sec, "cluster");
    assert_string_equal(key, "roles");
    (*(int *)ctx)++;
}

static void test_cluster(void **state)
{
    (void)state;
    samda_error err;
    samda_config *c = samda_config_load(NULL, NULL, &err);
    assert_non_null(c);
    assert_int_equal(c->storage_index, SAMDA_CFG_INDEX_SQLITE);
    assert_int_equal(samda_cluster_roles(c), SAMDA_NODE_INGEST | SAMDA_NODE_WORKER | SAMDA_NODE_EXPORT | SAMDA_NODE_API);
    assert_int_equal(c->cluster_node_timeout_ms, 30000);
    char node[SAMDA_CONFIG_NODE_SIZE];
    assert_true(samda_node_name_is_valid(samda_config_node_name(c, node))); /* from the host name */
    samda_config_unref(c);

    expect_error("[storage]\nindex = postgresql\n",
                 ":2: [storage] index = postgresql needs postgresql, the libpq connection string of the database "
                 "(e.g. postgresql = host=db.example dbname=samda user=samda)");
    expect_error("[cluster]\nnode = gpu 1\n", ":2: [cluster] node = gpu 1: a node name is 1..64 characters of "
                                                "A-Z a-z 0-9 . _ -");
    const char *p = write_conf("pg.conf", "[storage]\nindex = postgresql\n"
                                          "postgresql = host=db dbname=samda user=samda password=s3cret\n"
                                          "[cluster]\nnode = gpu-1\nroles = worker, export\n");
    c = samda_config_load(p, NULL, &err);
    if (!c) fail_msg("%s", err.message);
    assert_int_equal(c->storage_index, SAMDA_CFG_INDEX_POSTGRESQL);
    assert_string_equal(samda_config_node_name(c, node), "gpu-1");
    assert_int_equal(samda_cluster_roles(c), SAMDA_NODE_WORKER | SAMDA_NODE_EXPORT);
    char *out = NULL;
    size_t n;
    FILE *f = open_memstream(&out, &n);
    samda_config_write_effective(c, f);
    fclose(f);
    assert_null(strstr(out, "s3cret")); /* the connection string may hold a password */
    assert_non_null(strstr(out, "postgresql = ***"));
    free(out);
    const char *sets[] = {"cluster.roles=worker", NULL};
    samda_config *next = samda_config_load(p, sets, &err);
    assert_non_null(next);
    int noted = 0;
    assert_int_equal(samda_config_merge_reload(next, c, roles_note, &noted, &err), SAMDA_OK);
    assert_int_equal(noted, 1);
    assert_int_equal(samda_cluster_roles(next), SAMDA_NODE_WORKER | SAMDA_NODE_EXPORT); /* kept until a restart */
    samda_config_unref(next);
    samda_config_unref(c);
    expect_error("[cluster]\nroles = worker,gpu\n", ":2: [cluster] roles = gpu: must be among ingest|worker|export|api");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_line_and_rule),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_sites_overrides_and_paths),
        cmocka_unit_test(test_effective_round_trip),
        cmocka_unit_test(test_example_in_step),
        cmocka_unit_test(test_value_parsers),
        cmocka_unit_test(test_dicom_tls_keys),
        cmocka_unit_test(test_model_convention),
        cmocka_unit_test(test_routing_rules),
        cmocka_unit_test(test_cluster),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
