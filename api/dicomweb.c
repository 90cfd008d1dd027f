/* DICOMweb (PS3.18): STOW-RS streamed to temp files and handed to the core part by part, QIDO-RS
 * query validation, WADO-RS retrieval streamed from the core's files, metadata and frames.
 *
 * The api does not read DICOM: it never opens an uploaded part except to write it, and it sends
 * stored files as they are (no transcoding; the Accept header must allow application/dicom). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"
#include "random.h"

/* ---- shared ----------------------------------------------------------------------------------- */

static bool call_ok(api_request *r, samda_status st, samda_error *e, json_t **out)
{
    if (st == SAMDA_OK) return true;
    if (out && *out) {
        json_decref(*out);
        *out = NULL;
    }
    e->code = st;
    api_reply_error(r, e);
    return false;
}

void api_random_boundary(char *out, size_t size)
{
    char hex[25];
    /* A boundary need not be secret, only absent from the parts: on the (never seen) failure of
     * the kernel's generator the clock is unique enough. */
    if (samda_random_hex(hex, sizeof hex, 12, NULL) != SAMDA_OK) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(hex, sizeof hex, "%lx%lx", (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec);
    }
    snprintf(out, size, "samda-%s", hex);
}

/* ---- STOW-RS ---------------------------------------------------------------------------------- */

typedef struct stow_file {
    char *path;           /* NULL once removed */
    uint64_t size;
    char content_type[128];
} stow_file;

struct api_stow {
    samda_multipart *mp;
    int fd;               /* current part, -1 between parts */
    stow_file *files;
    unsigned n, cap;
    const char *tmp_dir;
};

static samda_status stow_part_begin(void *user, const samda_multipart_part *part, samda_error *err)
{
    api_stow *s = user;
    if (s->n == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 8;
        stow_file *nf = realloc(s->files, cap * sizeof *nf);
        if (!nf) return samda_fail(err, SAMDA_ENOMEM, "STOW-RS: out of memory at part %u", part->index + 1);
        s->files = nf;
        s->cap = cap;
    }
    stow_file *f = &s->files[s->n];
    memset(f, 0, sizeof *f);
    size_t plen = strlen(s->tmp_dir) + 32;
    f->path = malloc(plen);
    if (!f->path) return samda_fail(err, SAMDA_ENOMEM, "STOW-RS: out of memory at part %u", part->index + 1);
    snprintf(f->path, plen, "%s/samda-stow-XXXXXX", s->tmp_dir);
    s->fd = mkostemp(f->path, O_CLOEXEC);
    if (s->fd < 0) {
        int e = errno;
        free(f->path);
        f->path = NULL;
        return samda_fail(err, e == ENOSPC || e == EDQUOT ? SAMDA_ENOSPC : SAMDA_EIO,
                          "STOW-RS: cannot create a temp file for part %u: %s", part->index + 1, strerror(e));
    }
    snprintf(f->content_type, sizeof f->content_type, "%s", part->content_type);
    s->n++;
    return SAMDA_OK;
}

static samda_status stow_part_data(void *user, const void *data, size_t len, samda_error *err)
{
    api_stow *s = user;
    const char *p = data;
    while (len) {
        ssize_t w = write(s->fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            return samda_fail(err, e == ENOSPC || e == EDQUOT ? SAMDA_ENOSPC : SAMDA_EIO,
                              "STOW-RS: writing part %u to the upload directory: %s", s->n, strerror(e));
        }
        p += w;
        len -= (size_t)w;
        s->files[s->n - 1].size += (uint64_t)w;
    }
    return SAMDA_OK;
}

static samda_status stow_part_end(void *user, const samda_multipart_part *part, samda_error *err)
{
    api_stow *s = user;
    if (close(s->fd) != 0) {
        s->fd = -1;
        return samda_fail(err, SAMDA_EIO, "STOW-RS: closing part %u: %s", part->index + 1, strerror(errno));
    }
    s->fd = -1;
    return SAMDA_OK;
}

void api_stow_free(api_request *r)
{
    api_stow *s = r->stow;
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    for (unsigned i = 0; i < s->n; i++)
        if (s->files[i].path) {
            unlink(s->files[i].path);
            free(s->files[i].path);
        }
    free(s->files);
    samda_multipart_free(s->mp);
    free(s);
    r->stow = NULL;
}

bool api_stow_begin(api_request *r)
{
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[128], type[128], boundary[SAMDA_MULTIPART_BOUNDARY_MAX + 2];
    samda_error e = {SAMDA_OK, ""};
    if (!ct || samda_content_type_media(ct, media, sizeof media, &e) != SAMDA_OK || strcmp(media, "multipart/related") != 0) {
        api_reply_problem(r, SAMDA_ENOTSUP, 0, "STOW-RS body must be Content-Type: multipart/related; type=\"application/dicom\"");
        return false;
    }
    samda_status st = samda_content_type_param(ct, "type", type, sizeof type, &e);
    if (st != SAMDA_OK || strcasecmp(type, "application/dicom") != 0) {
        api_reply_problem(r, SAMDA_ENOTSUP, 0, "STOW-RS: only multipart/related; type=\"application/dicom\" is supported");
        return false;
    }
    st = samda_content_type_param(ct, "boundary", boundary, sizeof boundary, &e);
    if (st == SAMDA_ENOENT) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "multipart boundary missing from Content-Type");
        return false;
    }
    if (st == SAMDA_ETOOBIG) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "multipart boundary must be 1 to 70 characters (RFC 2046)");
        return false;
    }
    if (st != SAMDA_OK || samda_multipart_boundary_check(boundary, &e) != SAMDA_OK) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "%s", e.message);
        return false;
    }
    api_stow *s = calloc(1, sizeof *s);
    if (!s) {
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return false;
    }
    s->fd = -1;
    s->tmp_dir = r->api->tmp_dir;
    samda_multipart_callbacks cb = {s, stow_part_begin, stow_part_data, stow_part_end};
    s->mp = samda_multipart_new(boundary, NULL, &cb, &e);
    if (!s->mp) {
        free(s);
        api_reply_error(r, &e);
        return false;
    }
    r->stow = s;
    return true;
}

samda_status api_stow_feed(api_request *r, const char *data, size_t len, samda_error *err)
{
    if (!r->stow) return samda_fail(err, SAMDA_EINTERNAL, "STOW-RS parser missing");
    return samda_multipart_feed(r->stow->mp, data, len, err);
}

static json_t *ui(const char *v) { return json_pack("{s:s, s:[s]}", "vr", "UI", "Value", v); }
static json_t *ur(const char *v) { return json_pack("{s:s, s:[s]}", "vr", "UR", "Value", v); }

void api_h_stow(api_request *r)
{
    samda_api *api = r->api;
    api_stow *s = r->stow;
    samda_error e = {SAMDA_OK, ""};
    if (!s || samda_multipart_finish(s->mp, &e) != SAMDA_OK) {
        api_reply_problem(r, e.code ? e.code : SAMDA_EINVAL, 0, "%s", e.message[0] ? e.message : "STOW-RS body missing");
        return;
    }
    if (s->n == 0) {
        api_reply_problem(r, SAMDA_EINVAL, 0, "STOW-RS body has no parts");
        return;
    }
    const char *site = api_match_param(&r->match, "site");
    const char *study = api_match_param(&r->match, "study");
    char base[300];
    api_base_url(r, base, sizeof base);
    uint64_t rid = atomic_fetch_add(&api->next_request_id, 1) + 1;

    json_t *stored = json_array(), *failed = json_array();
    char first_study[SAMDA_API_UID_SIZE] = "";
    bool one_study = true;
    unsigned n_ok = 0, n_fail = 0, n_offered = 0;
    for (unsigned i = 0; i < s->n; i++) {
        stow_file *f = &s->files[i];
        samda_api_stow_outcome out;
        memset(&out, 0, sizeof out);
        samda_status st;
        char media[128] = "application/dicom";
        samda_error pe = {SAMDA_OK, ""};
        if (f->content_type[0] && (samda_content_type_media(f->content_type, media, sizeof media, NULL) != SAMDA_OK ||
                                   strcmp(media, "application/dicom") != 0)) {
            st = SAMDA_ENOTSUP;
            out.failure_reason = 0xC000; /* PS3.18: cannot understand */
        } else {
            samda_api_stow_part part = {rid, i, site, study, f->path, f->size, f->content_type[0] ? f->content_type : "application/dicom"};
            st = api->svc.stow_instance(api->svc.ctx, &part, &out, &pe);
            n_offered++;
        }
        /* Whatever the core left of the temp file goes now. */
        unlink(f->path);
        free(f->path);
        f->path = NULL;
        atomic_fetch_add(&api->metrics.stow_parts, 1);
        /* The core's UIDs go into the response and a URL: keep only valid ones. */
        const char *cls = api_valid_uid(out.sop_class_uid) ? out.sop_class_uid : NULL;
        const char *ins = api_valid_uid(out.sop_instance_uid) ? out.sop_instance_uid : NULL;
        json_t *item = json_object();
        if (cls) json_object_set_new(item, "00081150", ui(cls));
        if (ins) json_object_set_new(item, "00081155", ui(ins));
        if (st == SAMDA_OK) {
            n_ok++;
            if (api_valid_uid(out.study_uid) && api_valid_uid(out.series_uid) && ins) {
                char url[600];
                snprintf(url, sizeof url, "%s/dicomweb/studies/%s/series/%s/instances/%s", base, out.study_uid, out.series_uid, ins);
                json_object_set_new(item, "00081190", ur(url));
                if (!first_study[0]) snprintf(first_study, sizeof first_study, "%s", out.study_uid);
                else if (strcmp(first_study, out.study_uid) != 0) one_study = false;
            }
            json_array_append_new(stored, item);
        } else {
            n_fail++;
            atomic_fetch_add(&api->metrics.stow_failed, 1);
            unsigned reason = out.failure_reason ? out.failure_reason : samda_status_dicom(st);
            json_object_set_new(item, "00081197", json_pack("{s:s, s:[I]}", "vr", "US", "Value", (json_int_t)reason));
            json_array_append_new(failed, item);
            api_log(api, SAMDA_API_LOG_INFO, "STOW-RS part failed", "part=%u reason=0x%04X status=%s", i + 1, reason,
                    samda_status_name(st));
        }
    }
    unsigned http = n_fail == 0 ? 200 : n_ok == 0 ? 409 : 202; /* PS3.18 10.5.3 */
    json_t *resp = json_object();
    const char *study_url = study ? study : (one_study && first_study[0] ? first_study : NULL);
    if (study_url) {
        char url[400];
        snprintf(url, sizeof url, "%s/dicomweb/studies/%s", base, study_url);
        json_object_set_new(resp, "00081190", ur(url));
    }
    if (json_array_size(failed)) json_object_set_new(resp, "00081198", json_pack("{s:s, s:o}", "vr", "SQ", "Value", failed));
    else json_decref(failed);
    if (json_array_size(stored)) json_object_set_new(resp, "00081199", json_pack("{s:s, s:o}", "vr", "SQ", "Value", stored));
    else json_decref(stored);
    if (api->svc.stow_complete && n_offered) {
        samda_api_stow_summary sum = {rid, site, study, r->token_id, s->n, n_ok, n_fail, (int)http};
        api->svc.stow_complete(api->svc.ctx, &sum);
    }
    api_reply_json(r, http, resp, "application/dicom+json");
}

/* ---- QIDO-RS ---------------------------------------------------------------------------------- */

static const struct {
    const char *keyword;
    uint32_t tag;
} known_tags[] = {
    {"SOPClassUID", 0x00080016}, {"SOPInstanceUID", 0x00080018}, {"StudyDate", 0x00080020},
    {"SeriesDate", 0x00080021}, {"ContentDate", 0x00080023}, {"StudyTime", 0x00080030},
    {"SeriesTime", 0x00080031}, {"ContentTime", 0x00080033}, {"AccessionNumber", 0x00080050},
    {"InstanceAvailability", 0x00080056}, {"Modality", 0x00080060}, {"ModalitiesInStudy", 0x00080061},
    {"Manufacturer", 0x00080070}, {"InstitutionName", 0x00080080}, {"ReferringPhysicianName", 0x00080090},
    {"TimezoneOffsetFromUTC", 0x00080201}, {"StudyDescription", 0x00081030}, {"SeriesDescription", 0x0008103E},
    {"RetrieveURL", 0x00081190}, {"PatientName", 0x00100010}, {"PatientID", 0x00100020},
    {"PatientBirthDate", 0x00100030}, {"PatientSex", 0x00100040}, {"BodyPartExamined", 0x00180015},
    {"StudyInstanceUID", 0x0020000D}, {"SeriesInstanceUID", 0x0020000E}, {"StudyID", 0x00200010},
    {"SeriesNumber", 0x00200011}, {"InstanceNumber", 0x00200013}, {"NumberOfStudyRelatedSeries", 0x00201206},
    {"NumberOfStudyRelatedInstances", 0x00201208}, {"NumberOfSeriesRelatedInstances", 0x00201209},
    {"NumberOfFrames", 0x00280008}, {"Rows", 0x00280010}, {"Columns", 0x00280011},
    {"PerformedProcedureStepStartDate", 0x00400244}, {"PerformedProcedureStepStartTime", 0x00400245},
};

/* keyword or 8 hex digits -> tag; false if neither */
static bool attr_tag(const char *s, uint32_t *tag)
{
    if (strlen(s) == 8 && strspn(s, "0123456789abcdefABCDEF") == 8) {
        *tag = (uint32_t)strtoul(s, NULL, 16);
        return true;
    }
    for (size_t i = 0; i < sizeof known_tags / sizeof known_tags[0]; i++)
        if (strcmp(known_tags[i].keyword, s) == 0) {
            *tag = known_tags[i].tag;
            return true;
        }
    return false;
}

/* LO/SH-like matching values: printable, no backslash (the DICOM value separator). */
static bool valid_text(const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n > max) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f || c == '\\') return false;
    }
    return true;
}

static bool valid_date(const char *d)
{
    if (strlen(d) != 8 || strspn(d, "0123456789") != 8) return false;
    int y = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    int m = (d[4] - '0') * 10 + (d[5] - '0');
    int day = (d[6] - '0') * 10 + (d[7] - '0');
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || day < 1 || day > mdays[m - 1]) return false;
    if (m == 2 && day == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return false;
    return true;
}

enum qkey { Q_STUDY, Q_SERIES, Q_SOP, Q_PATIENT, Q_ACCESSION, Q_DATE, Q_MODS, Q_MOD, Q_PNAME, Q_SDESC, Q_COUNT };
static const struct {
    const char *keyword;
    uint32_t tag;
    unsigned levels; /* bit per samda_api_level */
} qkeys[Q_COUNT] = {
    [Q_STUDY] = {"StudyInstanceUID", 0x0020000D, 7},
    [Q_SERIES] = {"SeriesInstanceUID", 0x0020000E, 6},
    [Q_SOP] = {"SOPInstanceUID", 0x00080018, 4},
    [Q_PATIENT] = {"PatientID", 0x00100020, 7},
    [Q_ACCESSION] = {"AccessionNumber", 0x00080050, 7},
    [Q_DATE] = {"StudyDate", 0x00080020, 7},
    [Q_MODS] = {"ModalitiesInStudy", 0x00080061, 1},
    [Q_MOD] = {"Modality", 0x00080060, 6},
    [Q_PNAME] = {"PatientName", 0x00100010, 7},
    [Q_SDESC] = {"StudyDescription", 0x00081030, 7},
};

static samda_status set_uid(char *dst, const char *v, const char *name, samda_error *err)
{
    if (!*v) return SAMDA_OK; /* empty = universal match */
    if (!api_valid_uid(v)) return samda_fail(err, SAMDA_EINVAL, "query parameter %s must be a DICOM UID (digits and dots, at most 64)", name);
    if (dst[0] && strcmp(dst, v) != 0) return samda_fail(err, SAMDA_EINVAL, "query parameter %s contradicts the UID in the path", name);
    snprintf(dst, SAMDA_API_UID_SIZE, "%s", v);
    return SAMDA_OK;
}

samda_status api_qido_parse(samda_api_level level, const api_query_args *args, samda_api_query *q, bool *clamped,
                            samda_error *err)
{
    static const char *level_names[] = {"study", "series", "instance"};
    unsigned seen = 0;
    bool seen_limit = false, seen_offset = false;
    q->level = level;
    q->limit = SAMDA_API_QIDO_LIMIT_DEFAULT;
    *clamped = false;
    for (unsigned i = 0; i < args->n; i++) {
        const char *k = args->kv[i].key, *v = args->kv[i].value;
        if (strcmp(k, "includefield") == 0) {
            char tmp[API_QUERY_MAX_VALUE + 1];
            snprintf(tmp, sizeof tmp, "%s", v);
            char *save = NULL;
            if (!*tmp) return samda_fail(err, SAMDA_EINVAL, "query parameter includefield is empty");
            for (char *f = strtok_r(tmp, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
                uint32_t tag;
                if (strcmp(f, "all") == 0) {
                    q->include_all = true;
                    continue;
                }
                if (!attr_tag(f, &tag))
                    return samda_fail(err, SAMDA_EINVAL, "query parameter includefield: unknown attribute %.64s (use a keyword or 8 hex digits)", f);
                bool dup = false;
                for (unsigned j = 0; j < q->n_includefields; j++) dup |= q->includefields[j] == tag;
                if (dup) continue;
                if (q->n_includefields >= SAMDA_API_QUERY_MAX_INCLUDEFIELDS)
                    return samda_fail(err, SAMDA_EINVAL, "query parameter includefield: more than %d attributes", SAMDA_API_QUERY_MAX_INCLUDEFIELDS);
                q->includefields[q->n_includefields++] = tag;
            }
            continue;
        }
        if (strcmp(k, "limit") == 0 || strcmp(k, "offset") == 0) {
            bool is_limit = k[0] == 'l';
            if (is_limit ? seen_limit : seen_offset) return samda_fail(err, SAMDA_EINVAL, "query parameter %s given twice", k);
            uint64_t n;
            if (!api_parse_u64(v, is_limit ? 1 : 0, INT32_MAX, &n))
                return samda_fail(err, SAMDA_EINVAL, "query parameter %s must be an integer %s", k, is_limit ? "from 1" : "from 0");
            if (is_limit) {
                seen_limit = true;
                if (n > SAMDA_API_QIDO_LIMIT_MAX) {
                    n = SAMDA_API_QIDO_LIMIT_MAX;
                    *clamped = true;
                }
                q->limit = (unsigned)n;
            } else {
                seen_offset = true;
                q->offset = (unsigned)n;
            }
            continue;
        }
        if (strcmp(k, "fuzzymatching") == 0) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                return samda_fail(err, SAMDA_EINVAL, "query parameter fuzzymatching must be true or false");
            q->fuzzy = strcmp(v, "true") == 0;
            continue;
        }
        uint32_t tag;
        int key = -1;
        if (attr_tag(k, &tag))
            for (int j = 0; j < Q_COUNT; j++)
                if (qkeys[j].tag == tag) key = j;
        if (key < 0)
            return samda_fail(err, SAMDA_EINVAL, "query parameter %.64s is not supported (matching on StudyInstanceUID, "
                              "SeriesInstanceUID, SOPInstanceUID, PatientID, PatientName, AccessionNumber, StudyDate, "
                              "StudyDescription, ModalitiesInStudy, Modality)", k);
        const char *name = qkeys[key].keyword;
        if (!(qkeys[key].levels & (1u << level)))
            return samda_fail(err, SAMDA_EINVAL, "query parameter %s cannot be used in a %s-level search", name, level_names[level]);
        if (seen & (1u << key)) return samda_fail(err, SAMDA_EINVAL, "query parameter %s given twice", name);
        seen |= 1u << key;
        samda_status st = SAMDA_OK;
        switch ((enum qkey)key) {
        case Q_STUDY: st = set_uid(q->study_uid, v, name, err); break;
        case Q_SERIES: st = set_uid(q->series_uid, v, name, err); break;
        case Q_SOP: st = set_uid(q->sop_instance_uid, v, name, err); break;
        case Q_PATIENT:
            if (!valid_text(v, 64)) return samda_fail(err, SAMDA_EINVAL, "query parameter PatientID must be at most 64 printable characters without '\\'");
            snprintf(q->patient_id, sizeof q->patient_id, "%s", v);
            break;
        case Q_PNAME:
            if (!valid_text(v, sizeof q->patient_name - 1))
                return samda_fail(err, SAMDA_EINVAL, "query parameter PatientName must be at most %zu printable characters without '\\'",
                                  sizeof q->patient_name - 1);
            snprintf(q->patient_name, sizeof q->patient_name, "%s", v);
            break;
        case Q_SDESC:
            if (!valid_text(v, 64)) return samda_fail(err, SAMDA_EINVAL, "query parameter StudyDescription must be at most 64 printable characters without '\\'");
            snprintf(q->study_description, sizeof q->study_description, "%s", v);
            break;
        case Q_ACCESSION:
            if (!valid_text(v, 16)) return samda_fail(err, SAMDA_EINVAL, "query parameter AccessionNumber must be at most 16 printable characters without '\\'");
            snprintf(q->accession_number, sizeof q->accession_number, "%s", v);
            break;
        case Q_DATE: {
            /* PS3.4 C.2.2.2.5: a date or a range "from-to", either end may be open. */
            const char *dash = strchr(v, '-');
            char from[24] = "", to[24] = "";
            if (!*v) break;
            if (strlen(v) > 17) return samda_fail(err, SAMDA_EINVAL, "query parameter StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD");
            if (dash) {
                snprintf(from, sizeof from, "%.*s", (int)(dash - v), v);
                snprintf(to, sizeof to, "%s", dash + 1);
                if ((!from[0] && !to[0]) || (from[0] && !valid_date(from)) || (to[0] && !valid_date(to)) || strchr(dash + 1, '-'))
                    return samda_fail(err, SAMDA_EINVAL, "query parameter StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD");
                if (from[0] && to[0] && strcmp(from, to) > 0)
                    return samda_fail(err, SAMDA_EINVAL, "query parameter StudyDate: range starts after it ends");
            } else {
                if (!valid_date(v)) return samda_fail(err, SAMDA_EINVAL, "query parameter StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD");
                snprintf(from, sizeof from, "%s", v);
                snprintf(to, sizeof to, "%s", v);
            }
            q->has_date = true;
            memcpy(q->date_from, from, 9);
            memcpy(q->date_to, to, 9);
            break;
        }
        case Q_MODS:
        case Q_MOD: {
            if (seen & (1u << (key == Q_MODS ? Q_MOD : Q_MODS)))
                return samda_fail(err, SAMDA_EINVAL, "query parameters ModalitiesInStudy and Modality are exclusive");
            char tmp[API_QUERY_MAX_VALUE + 1];
            snprintf(tmp, sizeof tmp, "%s", v);
            char *save = NULL;
            for (char *m = strtok_r(tmp, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
                size_t n = strlen(m);
                if (n == 0 || n > 16) return samda_fail(err, SAMDA_EINVAL, "query parameter %s: each modality must be 1 to 16 characters", name);
                for (size_t c = 0; c < n; c++) {
                    m[c] = (char)toupper((unsigned char)m[c]);
                    if (!(isupper((unsigned char)m[c]) || isdigit((unsigned char)m[c]) || m[c] == '_' || m[c] == ' '))
                        return samda_fail(err, SAMDA_EINVAL, "query parameter %s: modality codes are A-Z, 0-9, '_' and space", name);
                }
                if (q->n_modalities >= SAMDA_API_QUERY_MAX_MODALITIES)
                    return samda_fail(err, SAMDA_EINVAL, "query parameter %s: more than %d modalities", name, SAMDA_API_QUERY_MAX_MODALITIES);
                memcpy(q->modalities[q->n_modalities++], m, n + 1);
            }
            break;
        }
        case Q_COUNT:
            break;
        }
        if (st != SAMDA_OK) return st;
    }
    return SAMDA_OK;
}

void api_h_qido(api_request *r)
{
    samda_api *api = r->api;
    samda_api_query q;
    memset(&q, 0, sizeof q);
    const char *study = api_match_param(&r->match, "study"), *series = api_match_param(&r->match, "series");
    if (study) snprintf(q.study_uid, sizeof q.study_uid, "%s", study);
    if (series) snprintf(q.series_uid, sizeof q.series_uid, "%s", series);
    bool clamped;
    samda_error e = {SAMDA_OK, ""};
    if (api_qido_parse((samda_api_level)r->match.route->arg, &r->args, &q, &clamped, &e) != SAMDA_OK) {
        api_reply_error(r, &e);
        return;
    }
    if (clamped) snprintf(r->warning, sizeof r->warning, "299 samda \"limit reduced to %u\"", SAMDA_API_QIDO_LIMIT_MAX);
    json_t *out = NULL;
    if (!call_ok(r, api->svc.qido(api->svc.ctx, &q, &out, &e), &e, &out)) return;
    if (!json_is_array(out)) {
        json_decref(out);
        api_reply_problem(r, SAMDA_EINTERNAL, 0, "search returned no array");
        return;
    }
    api_reply_json(r, 200, out, "application/dicom+json");
}

/* ---- WADO-RS ---------------------------------------------------------------------------------- */

/* Does Accept allow media (e.g. "multipart/related" with type)? Absent Accept allows everything. */
static bool accept_allows(api_request *r, const char *type)
{
    const char *acc = api_header(r, MHD_HTTP_HEADER_ACCEPT);
    if (!acc || !*acc) return true;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", acc);
    char *save = NULL;
    for (char *item = strtok_r(tmp, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char media[128], t[128];
        if (samda_content_type_media(item, media, sizeof media, NULL) != SAMDA_OK) continue;
        if (strcmp(media, "*/*") == 0 || strcmp(media, "multipart/*") == 0) return true;
        if (strcmp(media, "multipart/related") == 0) {
            if (samda_content_type_param(item, "type", t, sizeof t, NULL) != SAMDA_OK) return true;
            if (strcasecmp(t, type) == 0) return true;
        }
    }
    return false;
}

static void fill_ref(api_request *r, samda_api_ref *ref, char *base, size_t base_size)
{
    api_base_url(r, base, base_size);
    ref->base_url = base;
    ref->level = (samda_api_level)r->match.route->arg;
    ref->study = api_match_param(&r->match, "study");
    ref->series = api_match_param(&r->match, "series");
    ref->instance = api_match_param(&r->match, "instance");
}

typedef struct wado_stream {
    json_t *paths;
    size_t idx, n;
    int fd;
    char head[160];
    size_t head_len, head_off;
    bool in_head, closing, done;
    char boundary[48];
} wado_stream;

static void wado_head(wado_stream *w)
{
    if (w->idx < w->n)
        w->head_len = (size_t)snprintf(w->head, sizeof w->head, "%s--%s\r\nContent-Type: application/dicom\r\n\r\n",
                                       w->idx ? "\r\n" : "", w->boundary);
    else
        w->head_len = (size_t)snprintf(w->head, sizeof w->head, "\r\n--%s--\r\n", w->boundary);
    w->closing = w->idx >= w->n;
    w->head_off = 0;
    w->in_head = true;
}

static ssize_t wado_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    wado_stream *w = cls;
    size_t out = 0;
    while (out < max && !w->done) {
        if (w->in_head) {
            size_t k = w->head_len - w->head_off;
            if (k > max - out) k = max - out;
            memcpy(buf + out, w->head + w->head_off, k);
            w->head_off += k;
            out += k;
            if (w->head_off < w->head_len) break;
            w->in_head = false;
            if (w->closing) {
                w->done = true;
                break;
            }
            if (w->fd < 0) {
                const char *path = json_string_value(json_array_get(w->paths, w->idx));
                w->fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
                if (w->fd < 0) return MHD_CONTENT_READER_END_WITH_ERROR; /* vanished: the client sees a truncated body */
            }
            continue;
        }
        ssize_t n = read(w->fd, buf + out, max - out);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n == 0) {
            close(w->fd);
            w->fd = -1;
            w->idx++;
            wado_head(w);
            continue;
        }
        out += (size_t)n;
        break; /* one read per call keeps the logic simple; MHD calls again */
    }
    if (out == 0 && w->done) return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)out;
}

static void wado_free(void *cls)
{
    wado_stream *w = cls;
    if (w->fd >= 0) close(w->fd);
    json_decref(w->paths);
    free(w);
}

void api_h_wado(api_request *r)
{
    samda_api *api = r->api;
    if (!accept_allows(r, "application/dicom")) {
        api_reply_problem(r, SAMDA_ENOTSUP, 406, "only multipart/related; type=\"application/dicom\" can be returned");
        return;
    }
    samda_api_ref ref;
    char base[300];
    fill_ref(r, &ref, base, sizeof base);
    json_t *paths = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!call_ok(r, api->svc.retrieve(api->svc.ctx, &ref, &paths, &e), &e, &paths)) return;
    size_t n = json_array_size(paths);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(paths, i))) n = 0;
    if (!json_is_array(paths) || n == 0) {
        json_decref(paths);
        api_reply_problem(r, SAMDA_ENOENT, 0, "no instances to retrieve");
        return;
    }
    wado_stream *w = calloc(1, sizeof *w);
    if (!w) {
        json_decref(paths);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    w->paths = paths;
    w->n = n;
    api_random_boundary(w->boundary, sizeof w->boundary);
    /* Open the first file now so that a missing one is a proper error, not a cut stream. */
    w->fd = open(json_string_value(json_array_get(paths, 0)), O_RDONLY | O_CLOEXEC);
    if (w->fd < 0) {
        int en = errno;
        wado_free(w);
        api_reply_problem(r, SAMDA_EIO, 0, "stored file of the first instance cannot be opened: %s", strerror(en));
        return;
    }
    wado_head(w);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, wado_read, w, wado_free);
    if (!resp) {
        wado_free(w);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    char ct[160];
    snprintf(ct, sizeof ct, "multipart/related; type=\"application/dicom\"; boundary=%s", w->boundary);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    api_reply_response(r, 200, resp);
}

void api_h_metadata(api_request *r)
{
    samda_api *api = r->api;
    samda_api_ref ref;
    char base[300];
    fill_ref(r, &ref, base, sizeof base);
    json_t *out = NULL;
    samda_error e = {SAMDA_OK, ""};
    if (!call_ok(r, api->svc.metadata(api->svc.ctx, &ref, &out, &e), &e, &out)) return;
    if (!json_is_array(out)) {
        json_decref(out);
        api_reply_problem(r, SAMDA_EINTERNAL, 0, "metadata returned no array");
        return;
    }
    api_reply_json(r, 200, out, "application/dicom+json");
}

#define API_MAX_FRAMES 256
#define API_NATIVE_SYNTAX "1.2.840.10008.1.2.1" /* Explicit VR Little Endian */

void api_h_frames(api_request *r)
{
    samda_api *api = r->api;
    if (!accept_allows(r, "application/octet-stream")) {
        api_reply_problem(r, SAMDA_ENOTSUP, 406, "only multipart/related; type=\"application/octet-stream\" can be returned");
        return;
    }
    samda_api_ref ref;
    char base[300];
    fill_ref(r, &ref, base, sizeof base);
    unsigned frames[API_MAX_FRAMES], nf = 0;
    char tmp[API_PARAM_MAX + 1];
    snprintf(tmp, sizeof tmp, "%s", api_match_param(&r->match, "frames"));
    char *save = NULL;
    for (char *f = strtok_r(tmp, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (!api_parse_u64(f, 1, INT32_MAX, &v)) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "path parameter frames: frame numbers start at 1");
            return;
        }
        if (nf >= API_MAX_FRAMES) {
            api_reply_problem(r, SAMDA_EINVAL, 0, "path parameter frames: at most %d frames per request", API_MAX_FRAMES);
            return;
        }
        frames[nf++] = (unsigned)v;
    }
    char boundary[48];
    api_random_boundary(boundary, sizeof boundary);
    char *body = NULL;
    size_t blen = 0;
    FILE *out = open_memstream(&body, &blen);
    if (!out) {
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    for (unsigned i = 0; i < nf; i++) {
        void *data = NULL;
        size_t size = 0;
        samda_error e = {SAMDA_OK, ""};
        samda_status st = api->svc.frame(api->svc.ctx, &ref, frames[i], &data, &size, &e);
        if (st != SAMDA_OK) {
            free(data);
            fclose(out);
            free(body);
            e.code = st;
            api_reply_error(r, &e);
            return;
        }
        /* the core returns frames decoded to native little-endian bytes (bits packed for 1-bit
         * frames), which PS3.18 8.7.3.3.2 names by Explicit VR Little Endian */
        fprintf(out, "--%s\r\nContent-Type: application/octet-stream; transfer-syntax=" API_NATIVE_SYNTAX "\r\n\r\n",
                boundary);
        if (size) fwrite(data, 1, size, out);
        fputs("\r\n", out);
        free(data);
    }
    fprintf(out, "--%s--\r\n", boundary);
    if (fclose(out) != 0) {
        free(body);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(blen, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        api_reply_problem(r, SAMDA_ENOMEM, 0, "out of memory");
        return;
    }
    char ct[160];
    snprintf(ct, sizeof ct, "multipart/related; type=\"application/octet-stream\"; boundary=%s", boundary);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    api_reply_response(r, 200, resp);
}
