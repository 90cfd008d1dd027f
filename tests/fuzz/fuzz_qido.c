/* libFuzzer target for QIDO-RS query strings: api_query_args_parse() (api/router.c: splitting and
 * percent-decoding, as the server runs it on every request) and then api_qido_parse()
 * (api/dicomweb.c: the QIDO parameters). The first input byte picks the level (study, series,
 * instance) and whether the path already carried a study/series UID; the rest is the raw query
 * string (cut at the first NUL, as it arrives in a URI). On success the parsed query must hold
 * what the API promises the core: valid UIDs, terminated strings, a limit in range. Memory
 * errors, leaks and UB are caught by ASan/UBSan (the build adds them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void check_str(const char *s, size_t cap)
{
    if (!memchr(s, 0, cap)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    samda_api_level level = (samda_api_level)(data[0] % 3);
    unsigned path_uids = (data[0] / 3) % 3; /* 0: none, 1: study, 2: study and series */
    char *qs = malloc(size);
    if (!qs) return 0;
    memcpy(qs, data + 1, size - 1);
    qs[size - 1] = 0;

    api_query_args args;
    samda_error e = {SAMDA_OK, ""};
    if (api_query_args_parse(qs, &args, &e) == SAMDA_OK) {
        if (args.n > API_QUERY_MAX_PAIRS) abort();
        for (unsigned i = 0; i < args.n; i++) {
            if (!args.kv[i].key[0] || strlen(args.kv[i].key) > API_QUERY_MAX_KEY) abort();
            if (strlen(args.kv[i].value) > API_QUERY_MAX_VALUE) abort();
        }
        samda_api_query q;
        memset(&q, 0, sizeof q);
        if (path_uids >= 1) snprintf(q.study_uid, sizeof q.study_uid, "1.2.840.1");
        if (path_uids >= 2) snprintf(q.series_uid, sizeof q.series_uid, "1.2.840.1.2");
        bool clamped = false;
        if (api_qido_parse(level, &args, &q, &clamped, &e) == SAMDA_OK) {
            if (q.level != level) abort();
            if (q.limit < 1 || q.limit > SAMDA_API_QIDO_LIMIT_MAX) abort();
            if (q.n_modalities > SAMDA_API_QUERY_MAX_MODALITIES) abort();
            if (q.n_includefields > SAMDA_API_QUERY_MAX_INCLUDEFIELDS) abort();
            const char *uids[] = {q.study_uid, q.series_uid, q.sop_instance_uid};
            for (int i = 0; i < 3; i++) {
                check_str(uids[i], SAMDA_API_UID_SIZE);
                if (uids[i][0] && !api_valid_uid(uids[i])) abort();
            }
            check_str(q.patient_id, sizeof q.patient_id);
            check_str(q.accession_number, sizeof q.accession_number);
            check_str(q.patient_name, sizeof q.patient_name);
            check_str(q.study_description, sizeof q.study_description);
            check_str(q.date_from, sizeof q.date_from);
            check_str(q.date_to, sizeof q.date_to);
            for (unsigned i = 0; i < q.n_modalities; i++) check_str(q.modalities[i], sizeof q.modalities[i]);
        } else if (!e.message[0]) {
            abort(); /* every refusal says why */
        }
        api_query_args_free(&args);
    } else if (!e.message[0]) {
        abort();
    }
    free(qs);
    return 0;
}
