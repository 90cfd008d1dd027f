/* Tests of storage/tokens.c: a token's secret is returned once and only its SHA-256 is stored;
 * verification, revocation, listing without secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

static void test_tokens(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    char secret[SAMDA_TOKEN_SECRET_SIZE], secret2[SAMDA_TOKEN_SECRET_SIZE];
    int64_t id, id2;
    CHECK_OK(samda_store_token_create(f->s, "admin-cli", SAMDA_ROLE_ADMIN, secret, &id, &e));
    CHECK_OK(samda_store_token_create(f->s, "pacs-stow", SAMDA_ROLE_INGEST, secret2, &id2, &e));
    assert_int_equal(strlen(secret), 70);
    assert_int_equal(strncmp(secret, "samda_", 6), 0);
    assert_string_not_equal(secret, secret2);
    char scratch[SAMDA_TOKEN_SECRET_SIZE] = "junk";
    CHECK_ST(SAMDA_EEXIST, samda_store_token_create(f->s, "admin-cli", SAMDA_ROLE_USER, scratch, NULL, &e));
    assert_string_equal(scratch, ""); /* no secret handed out for a token that does not exist */
    CHECK_ST(SAMDA_EINVAL, samda_store_token_create(f->s, "x", (samda_role)7, scratch, NULL, &e));

    samda_token_info info;
    CHECK_OK(samda_store_token_verify(f->s, secret, &info, &e));
    assert_int_equal(info.id, id);
    assert_int_equal(info.role, SAMDA_ROLE_ADMIN);
    assert_string_equal(info.name, "admin-cli");
    char wrong[SAMDA_TOKEN_SECRET_SIZE];
    memcpy(wrong, secret, sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    CHECK_ST(SAMDA_EAUTH, samda_store_token_verify(f->s, wrong, &info, &e));
    CHECK_ST(SAMDA_EAUTH, samda_store_token_verify(f->s, "", &info, &e));
    CHECK_ST(SAMDA_EAUTH, samda_store_token_verify(f->s, NULL, &info, &e));

    /* the database holds neither secret, only hashes */
    /* replace() <> itself: the text holds the secret's body somewhere (instr()/strpos() in one text) */
    const char *secrets[] = {secret, secret + 6};
    assert_int_equal(fx_raw_int_params(f, "SELECT count(*) FROM api_tokens WHERE secret_sha256 = ?1 OR "
                                          "replace(secret_sha256, ?2, '') <> secret_sha256", 2, secrets), 0);
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM api_tokens"), 2); /* the query saw the rows */

    f->now_ms += 5;
    CHECK_OK(samda_store_token_revoke(f->s, id, &e));
    CHECK_ST(SAMDA_EAUTH, samda_store_token_verify(f->s, secret, &info, &e));
    assert_non_null(strstr(e.message, "not recognised")); /* does not say "revoked" */
    CHECK_OK(samda_store_token_revoke(f->s, id, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_token_revoke(f->s, 999, &e));
    CHECK_OK(samda_store_token_verify(f->s, secret2, NULL, &e));

    samda_token_info *list;
    size_t n;
    CHECK_OK(samda_store_token_list(f->s, &list, &n, &e));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].revoked_ms, f->now_ms);
    assert_int_equal(list[1].revoked_ms, 0);
    assert_int_equal(list[1].role, SAMDA_ROLE_INGEST);
    samda_store_free(list);
    assert_string_equal(samda_role_name(SAMDA_ROLE_USER), "user");
    assert_string_equal(samda_role_name((samda_role)-1), "unknown");
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
