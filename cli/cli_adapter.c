/* `samda adapter train | eval | tta | info | pretrain`: the SAM-DA decoder adapter from the command
 * line, over model.h's public functions alone (no DICOM, no store, no JSON library), so that the same
 * file also makes the samda-adapter program of a machine that builds model/ alone. Data are folders
 * of NAME.image.npy + NAME.mask.npy; `--dicom SERIES,SEG` is added by cli_adapter_dicom.c.
 * Results are one JSON object on stdout; messages and usage on stderr. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char usage_text[] =
    "usage: samda adapter COMMAND [options]\n"
    "  info     --checkpoint F [--adapter A | --rank R --tokens T --labels L,..]\n"
    "  train    --checkpoint F --data DIR --out A2 [--adapter-in A] [--epochs N] [--lr X] [--rank R]\n"
    "           [--tokens T] [--prompt free|box|mixed|point] [--val-split X] [--seed S] [--batch B]\n"
    "           [--labels liver,kidney,spleen,aorta,inferior_vena_cava | --labels-file SCHEMA.json]\n"
    "           [--window LEVEL,WIDTH] (--labels: the demo's built-in schema; with --dicom also from_segs)\n"
    "           [--max-cases N] [--patience N] [--scope adapter|decoder|full] [--eval-data DIR]\n"
    "           [--place all|LIST]  (LIST of self_attn,token_to_image,mlp,image_to_token,tokens_self,\n"
    "           tokens_image,embed; with --adapter-in: the parts it lacks are added, freshly initialised)\n"
    "           (scope decoder/full also trains the base in memory only: use --eval-data to score it)\n"
    "  eval     --checkpoint F [--adapter A] --data DIR [--prompt free|box] [--max-cases N]\n"
    "           (Dice, HD95 (mm when NAME.json or phantom.json gives the spacing) and area difference in %)\n"
    "  tta      --checkpoint F --adapter A --data DIR --out A2 [--steps N] [--lr X] [--seed S] [--max-cases N]\n"
    "           [--anchor W]  (weight keeping box-prompted decoding as it was; default 0.3, 0 = off)\n"
    "           [--accept-agreement X] [--accept-flip X] [--accept-consistency X]  (acceptance rule:\n"
    "           min share of confident foreground kept, max confident flip, max consistency drop)\n"
    "  pretrain --config C --data DIR --out base.pth [--epochs N] [--lr X] [--seed S] [--batch B]\n"
    "           [--val-split X] [--max-seconds S] [--half]   (trains a whole SAM from random weights)\n"
    "common: [--config C] [--device cpu|auto|N] [--threads N] [--quiet]\n"
    "NAME.image.npy holds H x W raw values (CT: HU); NAME.mask.npy the label ids (phantom ids: liver 1,\n"
    "kidney 2, spleen 3, aorta 4, inferior_vena_cava 5). Windows default to CT level 50, width 400.\n";

/* The labels --labels may name: the phantom's ids, with their SNOMED CT codes and colours. */
typedef struct builtin_label {
    const char *name;
    int value;
    const char *code, *meaning;
    uint8_t rgb[3];
} builtin_label;

static const builtin_label builtin_labels[] = {{"liver", 1, "10200004", "Liver", {221, 130, 101}},
                                               {"kidney", 2, "64033007", "Kidney", {185, 102, 83}},
                                               {"spleen", 3, "78961009", "Spleen", {157, 108, 162}},
                                               {"aorta", 4, "15825003", "Aorta", {224, 97, 76}},
                                               {"inferior_vena_cava", 5, "64131007", "Inferior vena cava",
                                                {0, 151, 206}}};

/* ---- The command line: --name VALUE, --name=VALUE, switches; the last of a repeated option wins ---- */

static const char *const option_names[] = {
    "checkpoint", "config", "adapter", "adapter-in", "out", "data", "epochs", "lr", "rank", "tokens",
    "prompt", "val-split", "seed", "batch", "labels", "labels-file", "window", "max-cases", "patience", "scope", "steps",
    "eval-data", "device", "threads", "max-seconds", "place", "anchor", "accept-agreement", "accept-flip",
    "accept-consistency",
    /* switches (no value) from here */
    "half", "quiet", "help"};
enum { N_OPTIONS = sizeof option_names / sizeof *option_names, FIRST_SWITCH = N_OPTIONS - 3 };

typedef struct adapter_args {
    const char *cmd;
    const char *value[N_OPTIONS]; /* NULL = not given; argv's strings (or "1" for a switch) */
} adapter_args;

static int option_index(const char *name, size_t len)
{
    for (int k = 0; k < N_OPTIONS; k++)
        if (strlen(option_names[k]) == len && !strncmp(option_names[k], name, len)) return k;
    return -1;
}

/* The value of --key, or def when it was not given. */
static const char *arg_str(const adapter_args *a, const char *key, const char *def)
{
    int k = option_index(key, strlen(key));
    return k >= 0 && a->value[k] ? a->value[k] : def;
}

static bool arg_has(const adapter_args *a, const char *key) { return arg_str(a, key, NULL) != NULL; }

/* Print "samda adapter: MESSAGE" and the usage on stderr; returns CLI_EXIT_USAGE. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("samda adapter: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_text);
    return CLI_EXIT_USAGE;
}

/* argv[1] is the command; every later argument an option. Returns CLI_EXIT_OK or a usage error. */
static int parse_args(int argc, char **argv, adapter_args *a)
{
    if (argc < 2) return usage_error("missing command");
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0) return usage_error("unexpected argument \"%s\"", s);
        s += 2;
        const char *eq = strchr(s, '=');
        size_t len = eq ? (size_t)(eq - s) : strlen(s);
        int k = option_index(s, len);
        if (k >= FIRST_SWITCH) {
            a->value[k] = "1";
            continue;
        }
        if (k < 0) return usage_error("unknown option --%.*s", (int)len, s);
        if (eq) {
            a->value[k] = eq + 1;
        } else {
            if (i + 1 >= argc) return usage_error("--%s needs a value", s);
            a->value[k] = argv[++i];
        }
    }
    return CLI_EXIT_OK;
}

static bool to_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool to_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* A numeric option within [lo, hi] into dst; otherwise a usage error (rc set, then goto done). The
 * message shows the bounds as written here. */
#define NUM_OPT(a, key, lo, hi, dst, T)                                                                    \
    do {                                                                                                   \
        if (arg_has(a, key)) {                                                                             \
            T v_;                                                                                          \
            if (!to_##T(arg_str(a, key, ""), lo, hi, &v_)) {                                               \
                rc = usage_error("--%s must be a number in " #lo ".." #hi, key);                           \
                goto done;                                                                                 \
            }                                                                                              \
            dst = v_;                                                                                      \
        }                                                                                                  \
    } while (0)

/* ---- Pieces of the commands ----------------------------------------------------------------------- */

static samda_model *open_model(const adapter_args *a, const char *ckpt, bool random, uint64_t seed)
{
    samda_model_params mp;
    samda_model_params_init(&mp);
    const char *cfg = arg_str(a, "config", "");
    mp.checkpoint_path = ckpt;
    mp.config_path = *cfg ? cfg : NULL;
    if (*cfg && random) mp.arch = "custom";
    mp.random_weights = random ? 1 : 0;
    mp.seed = seed;
    const char *dev = arg_str(a, "device", "auto");
    long v = 0;
    mp.device = !strcmp(dev, "cpu")      ? SAMDA_MODEL_DEVICE_CPU
                : !strcmp(dev, "auto")   ? SAMDA_MODEL_DEVICE_AUTO
                : to_long(dev, 0, 64, &v) ? (int)v
                                         : SAMDA_MODEL_DEVICE_AUTO;
    if (arg_has(a, "threads") && to_long(arg_str(a, "threads", ""), 1, 1024, &v)) mp.n_threads = (int)v;
    samda_error err = {0};
    samda_model *m = samda_model_open(&mp, &err);
    if (!m) fprintf(stderr, "samda adapter: %s\n", err.message);
    return m;
}

static bool parse_prompt(const char *s, samda_train_prompt *out)
{
    if (!strcmp(s, "free")) *out = SAMDA_TRAIN_PROMPT_FREE;
    else if (!strcmp(s, "box")) *out = SAMDA_TRAIN_PROMPT_BOX;
    else if (!strcmp(s, "mixed")) *out = SAMDA_TRAIN_PROMPT_MIXED;
    else if (!strcmp(s, "point")) *out = SAMDA_TRAIN_PROMPT_POINT;
    else return false;
    return true;
}

/* --place: "all" or a comma-separated list of part names. Returns CLI_EXIT_OK or a usage error. */
static int parse_place(const char *s, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } parts[] = {{"self_attn", SAMDA_ADAPTER_PLACE_SELF_ATTN},     {"token_to_image", SAMDA_ADAPTER_PLACE_TOKEN2IMAGE},
                 {"mlp", SAMDA_ADAPTER_PLACE_MLP},                 {"image_to_token", SAMDA_ADAPTER_PLACE_IMAGE},
                 {"tokens_self", SAMDA_ADAPTER_PLACE_TOKENS_SELF}, {"tokens_image", SAMDA_ADAPTER_PLACE_TOKENS_IMAGE},
                 {"embed", SAMDA_ADAPTER_PLACE_EMBED}};
    if (!strcmp(s, "all")) {
        *out = SAMDA_ADAPTER_PLACE_ALL;
        return CLI_EXIT_OK;
    }
    unsigned bits = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
            if (strlen(parts[k].name) == len && !strncmp(parts[k].name, p, len)) {
                bits |= parts[k].bit;
                found = true;
            }
        if (!found)
            return usage_error("--place: unknown part \"%.*s\" (all, or a list of self_attn, token_to_image, mlp, "
                               "image_to_token, tokens_self, tokens_image, embed)",
                               (int)len, p);
        p += len;
        if (!*p) break;
    }
    *out = bits;
    return CLI_EXIT_OK;
}

/* The label schema in the JSON file path (docs/adaptation.md, "Label schema") into *out (caller
 * frees). Returns CLI_EXIT_OK, or CLI_EXIT_FAIL after a message naming the file, entry and field. */
static int make_labels(const adapter_args *a, samda_adapter_label **out, size_t *n_out);

static int read_labels_file(const char *path, samda_adapter_label **out, size_t *n_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "samda adapter: --labels-file %s: %s\n", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    enum { MAX_SCHEMA = 1 << 20 }; /* 64 labels take a few KiB */
    char *text = malloc(MAX_SCHEMA + 1);
    size_t len = text ? fread(text, 1, MAX_SCHEMA + 1, f) : 0;
    bool bad_read = ferror(f) != 0;
    fclose(f);
    int rc = CLI_EXIT_OK;
    samda_error err = {0};
    if (!text || bad_read || len > MAX_SCHEMA) {
        fprintf(stderr, "samda adapter: --labels-file %s: %s\n", path,
                !text ? "out of memory" : bad_read ? "read error" : "larger than 1 MiB");
        rc = CLI_EXIT_FAIL;
    } else if (samda_adapter_labels_parse(text, len, path, out, n_out, &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: --labels-file %s\n", err.message);
        rc = CLI_EXIT_FAIL;
    }
    free(text);
    return rc;
}

int cli_adapter_labels(int argc, char **argv, samda_adapter_label **out, size_t *n_out)
{
    adapter_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc;
    if (!arg_has(&a, "labels") && !arg_has(&a, "labels-file"))
        a.value[option_index("labels", 6)] = "liver,kidney,spleen,aorta,inferior_vena_cava";
    return make_labels(&a, out, n_out);
}

/* Labels for a new adapter from --labels-file, or --labels (the demo's built-in schema) and --window,
 * into *out (malloc'd; caller frees).
 * Returns CLI_EXIT_OK, a usage error, or CLI_EXIT_FAIL (out of memory, a bad schema file). */
static int make_labels(const adapter_args *a, samda_adapter_label **out, size_t *n_out)
{
    if (arg_has(a, "labels-file")) {
        if (arg_has(a, "labels")) return usage_error("--labels and --labels-file exclude each other");
        if (arg_has(a, "window")) return usage_error("--window applies to --labels; a schema file has its own windows");
        return read_labels_file(arg_str(a, "labels-file", ""), out, n_out);
    }
    const char *list = arg_str(a, "labels", "liver,kidney,spleen,aorta");
    if (!strcmp(list, "from_segs")) return usage_error("--labels from_segs needs --dicom SERIES,SEG");
    double level = 50, width = 400;
    if (arg_has(a, "window")) {
        const char *w = arg_str(a, "window", "");
        const char *c = strchr(w, ',');
        char *end = NULL;
        double v = c ? strtod(w, &end) : 0; /* a number never holds a comma: it ends where LEVEL does */
        if (!c || end != c || c == w || !isfinite(v) || v < -5000 || v > 5000 ||
            !to_double(c + 1, 1, 10000, &width))
            return usage_error("--window must be LEVEL,WIDTH (HU)");
        level = v;
    }
    size_t n = 0, cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    samda_adapter_label *labels = calloc(cap, sizeof *labels);
    if (!labels) {
        fprintf(stderr, "samda adapter: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        const builtin_label *b = NULL;
        for (size_t k = 0; k < sizeof builtin_labels / sizeof *builtin_labels; k++)
            if (strlen(builtin_labels[k].name) == len && !strncmp(builtin_labels[k].name, p, len))
                b = &builtin_labels[k];
        if (!b) {
            free(labels);
            return usage_error("unknown label \"%.*s\" (known: liver, kidney, spleen, aorta, inferior_vena_cava)",
                               (int)len, p);
        }
        samda_adapter_label *l = &labels[n++];
        snprintf(l->name, sizeof l->name, "%s", b->name);
        l->value = b->value;
        snprintf(l->category_scheme, sizeof l->category_scheme, "SCT");
        snprintf(l->category_code, sizeof l->category_code, "123037004");
        snprintf(l->category_meaning, sizeof l->category_meaning, "Anatomical Structure");
        snprintf(l->type_scheme, sizeof l->type_scheme, "SCT");
        snprintf(l->type_code, sizeof l->type_code, "%s", b->code);
        snprintf(l->type_meaning, sizeof l->type_meaning, "%s", b->meaning);
        memcpy(l->rgb, b->rgb, 3);
        l->window_kind = SAMDA_WINDOW_CT;
        l->window_a = level;
        l->window_b = width;
        p += len;
        if (!*p) break;
    }
    *out = labels;
    *n_out = n;
    return CLI_EXIT_OK;
}

static void print_info(const samda_model *m, const samda_adapter *ad)
{
    samda_model_info mi;
    samda_model_get_info(m, &mi, NULL);
    samda_adapter_info ai;
    samda_adapter_get_info(ad, &ai, NULL);
    printf("{\"base\":{\"arch\":\"%s\",\"fingerprint\":\"%s\",\"params\":%" PRId64 "},\n", mi.arch, mi.fingerprint,
           mi.n_params_total);
    printf(" \"adapter\":{\"version\":\"%s\",\"parent\":\"%s\",\"rank\":%d,\"tokens\":%d,\"depth\":%d,\"dim\":%d,"
           "\"placement\":%u,\"labels\":%zu,\n",
           ai.version, ai.parent, ai.rank, ai.n_tokens, ai.depth, ai.dim, ai.placement, ai.n_labels);
    printf("  \"trainable_params\":%" PRId64 ",\"vit_b_params\":%lld,\"fraction_of_vit_b\":%.6f,"
           "\"percent_of_vit_b\":%.4f,\"fraction_of_base\":%.6f,\"under_1_percent_of_vit_b\":%s},\n",
           ai.n_trainable, (long long)SAMDA_ADAPTER_VIT_B_PARAMS, ai.fraction_of_vit_b, 100.0 * ai.fraction_of_vit_b,
           ai.fraction_of_base, ai.fraction_of_vit_b < 0.01 ? "true" : "false");
    printf(" \"labels\":[");
    for (size_t i = 0; i < ai.n_labels; i++) {
        const samda_adapter_label *l = samda_adapter_label_at(ad, i);
        printf("%s\"%s\"", i ? "," : "", l->name);
    }
    const char *prov = samda_adapter_metadata(ad, "provenance");
    printf("],\n \"provenance\":%s}\n", prov ? prov : "null");
}

/* --epochs, --lr, --batch and --val-split, which train and pretrain share, into *tp.
 * Returns CLI_EXIT_OK or a usage error. */
static int training_options(const adapter_args *a, samda_train_params *tp)
{
    int rc = CLI_EXIT_OK;
    NUM_OPT(a, "epochs", 1, 100000, tp->epochs, long);
    NUM_OPT(a, "lr", 1e-9, 1.0, tp->lr, double);
    NUM_OPT(a, "batch", 1, 1024, tp->batch, long);
    NUM_OPT(a, "val-split", 0.0, 0.9, tp->val_split, double);
done:
    return rc;
}

/* ---- The commands ---------------------------------------------------------------------------------- */

/* pretrain: a whole SAM from seeded random weights (--config's architecture), saved as a .pth. */
static int cmd_pretrain(const adapter_args *a, uint64_t seed)
{
    if (!arg_has(a, "config") || !arg_has(a, "data") || !arg_has(a, "out"))
        return usage_error("pretrain needs --config, --data and --out");
    samda_model *m = open_model(a, NULL, true, seed);
    if (!m) return CLI_EXIT_FAIL;
    int rc = CLI_EXIT_OK;
    samda_error err = {0};
    samda_train_params tp;
    samda_train_params_init(&tp);
    tp.data_dir = arg_str(a, "data", "");
    tp.scope = SAMDA_TRAIN_SCOPE_FULL;
    tp.prompt = SAMDA_TRAIN_PROMPT_MIXED;
    tp.lr = 3e-4;
    tp.seed = seed;
    tp.patience = 0;
    tp.val_split = 0.1;
    tp.progress = arg_has(a, "quiet") ? 0 : -1;
    if ((rc = training_options(a, &tp)) != CLI_EXIT_OK) goto done;
    NUM_OPT(a, "max-seconds", 0.0, 1e7, tp.max_seconds, double);
    NUM_OPT(a, "max-cases", 0, 10000000, tp.max_cases, long);
    const char *out = arg_str(a, "out", "");
    samda_train_report rep;
    if (samda_adapter_train(m, NULL, &tp, &rep, &err) != SAMDA_OK ||
        samda_model_save(m, out, arg_has(a, "half"), &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        rc = CLI_EXIT_FAIL;
    } else {
        printf("{\"out\":\"%s\",\"cases\":%d,\"epochs_run\":%d,\"best_epoch\":%d,\"val_dice_box\":%.4f,"
               "\"seconds\":%.1f,\"seconds_per_epoch\":%.1f}\n",
               out, rep.n_cases, rep.epochs_run, rep.best_epoch, rep.best_val_dice, rep.total_seconds,
               rep.seconds_per_epoch);
    }
done:
    samda_model_close(m);
    return rc;
}

/* info and train without --adapter/--adapter-in: a fresh adapter from --rank, --tokens, --labels,
 * --window and --place. Returns CLI_EXIT_OK with *out set, or the exit status of the failure. */
static int new_adapter(const adapter_args *a, samda_model *m, unsigned place, uint64_t seed, samda_adapter **out)
{
    int rc = CLI_EXIT_OK;
    samda_adapter_params ap;
    samda_adapter_params_init(&ap);
    if (place) ap.placement = place;
    NUM_OPT(a, "rank", 1, 256, ap.rank, long);
    NUM_OPT(a, "tokens", 1, 64, ap.n_tokens, long);
    samda_adapter_label *labels = NULL;
    size_t n_labels = 0;
    if ((rc = make_labels(a, &labels, &n_labels)) != CLI_EXIT_OK) goto done;
    ap.labels = labels;
    ap.n_labels = n_labels;
    ap.seed = seed;
    samda_error err = {0};
    if (!(*out = samda_adapter_new(m, &ap, &err))) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        rc = CLI_EXIT_FAIL;
    }
    free(labels); /* copied by samda_adapter_new */
done:
    return rc;
}

/* train: supervised training of the adapter on --data, saved to --out; --eval-data scores it. */
static int cmd_train(const adapter_args *a, samda_model *m, samda_adapter *ad, uint64_t seed)
{
    if (!arg_has(a, "data") || !arg_has(a, "out")) return usage_error("train needs --data and --out");
    int rc = CLI_EXIT_OK;
    samda_error err = {0};
    samda_train_params tp;
    samda_train_params_init(&tp);
    tp.data_dir = arg_str(a, "data", "");
    tp.seed = seed;
    tp.progress = arg_has(a, "quiet") ? 0 : -1;
    if (arg_has(a, "prompt") && !parse_prompt(arg_str(a, "prompt", ""), &tp.prompt))
        return usage_error("--prompt must be free, box, mixed or point");
    if (arg_has(a, "scope")) {
        const char *s = arg_str(a, "scope", "");
        if (!strcmp(s, "adapter")) tp.scope = SAMDA_TRAIN_SCOPE_ADAPTER;
        else if (!strcmp(s, "decoder")) tp.scope = SAMDA_TRAIN_SCOPE_DECODER;
        else if (!strcmp(s, "full")) tp.scope = SAMDA_TRAIN_SCOPE_FULL;
        else return usage_error("--scope must be adapter, decoder or full");
    }
    if ((rc = training_options(a, &tp)) != CLI_EXIT_OK) goto done;
    NUM_OPT(a, "patience", 0, 100000, tp.patience, long);
    NUM_OPT(a, "max-cases", 0, 10000000, tp.max_cases, long);
    const char *out = arg_str(a, "out", "");
    samda_train_report rep;
    if (samda_adapter_train(m, ad, &tp, &rep, &err) != SAMDA_OK || samda_adapter_save(ad, out, &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    /* Held-out evaluation in this process (with scope decoder/full the changed base exists only here). */
    double test_free = -1, test_box = -1;
    if (arg_has(a, "eval-data")) {
        const char *ed = arg_str(a, "eval-data", "");
        if (samda_adapter_evaluate(m, ad, ed, SAMDA_TRAIN_PROMPT_FREE, 0, NULL, &test_free, &err) != SAMDA_OK ||
            samda_adapter_evaluate(m, ad, ed, SAMDA_TRAIN_PROMPT_BOX, 0, NULL, &test_box, &err) != SAMDA_OK) {
            fprintf(stderr, "samda adapter: %s\n", err.message);
            return CLI_EXIT_FAIL;
        }
    }
    printf("{\"test_dice_free\":%.4f,\"test_dice_box\":%.4f,", test_free, test_box);
    printf("\"out\":\"%s\",\"cases\":%d,\"train\":%d,\"val\":%d,\"epochs_run\":%d,\"best_epoch\":%d,"
           "\"val_dice\":%.4f,\"trainable_params\":%" PRId64 ",\"encode_seconds\":%.1f,"
           "\"seconds_per_epoch\":%.2f,\"seconds\":%.1f,\"peak_rss_mb\":%.0f",
           out, rep.n_cases, rep.n_train, rep.n_val, rep.epochs_run, rep.best_epoch, rep.best_val_dice,
           rep.n_trainable, rep.encode_seconds, rep.seconds_per_epoch, rep.total_seconds,
           rep.peak_bytes / 1048576.0);
    if (rep.box_guard) /* box Dice on the guard's cases: the parent's, the base's, the result's */
        printf(",\"box_guard_cases\":%d,\"box_dice_parent\":%.4f,\"box_dice_base\":%.4f,\"box_dice_after\":%.4f,"
               "\"box_rolled_back\":%s,\"label_token_epochs\":%d",
               rep.box_guard_cases, rep.box_dice_parent, rep.box_dice_base, rep.box_dice_after,
               rep.box_rolled_back ? "true" : "false", rep.label_token_epochs);
    printf("}\n");
done:
    return rc;
}

/* eval: Dice per case on --data, prompt-free with an adapter, box-prompted without (JSON from model/). */
static int cmd_eval(const adapter_args *a, samda_model *m, samda_adapter *ad)
{
    if (!arg_has(a, "data")) return usage_error("eval needs --data");
    samda_train_prompt pr = ad ? SAMDA_TRAIN_PROMPT_FREE : SAMDA_TRAIN_PROMPT_BOX;
    if (arg_has(a, "prompt") && (!parse_prompt(arg_str(a, "prompt", ""), &pr) ||
                                 (pr != SAMDA_TRAIN_PROMPT_FREE && pr != SAMDA_TRAIN_PROMPT_BOX)))
        return usage_error("--prompt must be free or box");
    long mc = 0;
    if (arg_has(a, "max-cases") && !to_long(arg_str(a, "max-cases", ""), 0, 10000000, &mc))
        return usage_error("--max-cases must be 0..10000000");
    samda_error err = {0};
    char *json = NULL;
    if (samda_adapter_evaluate(m, ad, arg_str(a, "data", ""), pr, (int)mc, &json, NULL, &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    printf("%s\n", json);
    free(json);
    return CLI_EXIT_OK;
}

/* Copy s into out (n bytes) as the inside of a JSON string: quotes, backslashes and control
 * characters escaped; cut short (still valid) when out is too small. */
static void json_escape(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k] = 0;
}

/* tta: test-time adaptation of --adapter on the unlabelled images of --data, saved to --out. */
static int cmd_tta(const adapter_args *a, samda_model *m, samda_adapter *ad, uint64_t seed)
{
    if (!ad || !arg_has(a, "data") || !arg_has(a, "out")) return usage_error("tta needs --adapter, --data and --out");
    int rc = CLI_EXIT_OK;
    samda_tta_params tp;
    samda_tta_params_init(&tp);
    tp.seed = seed;
    tp.progress = arg_has(a, "quiet") ? 0 : -1;
    NUM_OPT(a, "steps", 0, 100000, tp.steps, long);
    NUM_OPT(a, "lr", 1e-9, 1.0, tp.lr, double);
    NUM_OPT(a, "anchor", 0.0, 1000.0, tp.prompt_anchor_weight, double);
    NUM_OPT(a, "accept-agreement", 0.0, 1.0, tp.min_confident_agreement, double);
    NUM_OPT(a, "accept-flip", 0.0, 1e9, tp.max_confident_flip, double);
    NUM_OPT(a, "accept-consistency", 0.0, 1.0, tp.max_consistency_drop, double);
    long mc = 0;
    if (arg_has(a, "max-cases") && !to_long(arg_str(a, "max-cases", ""), 0, 10000000, &mc))
        return usage_error("--max-cases must be 0..10000000");
    const char *out = arg_str(a, "out", "");
    samda_error err = {0};
    samda_tta_report rep;
    if (samda_adapter_tta_dir(m, ad, arg_str(a, "data", ""), (int)mc, &tp, &rep, &err) != SAMDA_OK ||
        samda_adapter_save(ad, out, &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    /* reason and decision may quote label names: escape them */
    char reason[2 * sizeof rep.reason], decision[2 * sizeof rep.decision];
    json_escape(rep.reason, reason, sizeof reason);
    json_escape(rep.decision, decision, sizeof decision);
    printf("{\"out\":\"%s\",\"steps\":%d,\"reverted\":%s,\"reason\":\"%s\",\"decision\":\"%s\","
           "\"iou_before\":%.4f,\"iou_after\":%.4f,\"area_ratio_min\":%.3f,\"area_ratio_max\":%.3f,"
           "\"confident_agreement\":%.4f,\"confident_flip\":%.4f,\"consistency_before\":%.4f,"
           "\"consistency_after\":%.4f,\"labels_rolled_back\":%d,\"seconds\":%.1f}\n",
           out, rep.steps_run, rep.reverted ? "true" : "false", reason, decision, rep.iou_before, rep.iou_after,
           rep.area_ratio_min, rep.area_ratio_max, rep.confident_agreement, rep.confident_flip,
           rep.consistency_before, rep.consistency_after, rep.labels_rolled_back, rep.seconds);
done:
    return rc;
}

/* info, train, eval and tta: the base model from --checkpoint, the adapter from --adapter or
 * --adapter-in (extended by --place for info and train), or a fresh one for info and train. */
static int cmd_with_checkpoint(const adapter_args *a, uint64_t seed)
{
    if (!arg_has(a, "checkpoint")) return usage_error("%s needs --checkpoint", a->cmd);
    samda_model *m = open_model(a, arg_str(a, "checkpoint", ""), false, 1);
    if (!m) return CLI_EXIT_FAIL;
    const bool is_info = !strcmp(a->cmd, "info"), is_train = !strcmp(a->cmd, "train");
    int rc = CLI_EXIT_OK;
    samda_error err = {0};
    samda_adapter *ad = NULL;
    const char *in = arg_str(a, "adapter", arg_str(a, "adapter-in", ""));
    if (*in && !(ad = samda_adapter_load(m, in, &err))) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    unsigned place = 0;
    if (arg_has(a, "place") && (rc = parse_place(arg_str(a, "place", ""), &place)) != CLI_EXIT_OK) goto done;
    if (ad && place && (is_info || is_train) && samda_adapter_extend(ad, place, &err) != SAMDA_OK) {
        fprintf(stderr, "samda adapter: %s\n", err.message);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    if ((is_info || is_train) && !ad && (rc = new_adapter(a, m, place, seed, &ad)) != CLI_EXIT_OK) goto done;
    if (is_info) print_info(m, ad);
    else if (is_train) rc = cmd_train(a, m, ad, seed);
    else if (!strcmp(a->cmd, "eval")) rc = cmd_eval(a, m, ad);
    else if (!strcmp(a->cmd, "tta")) rc = cmd_tta(a, m, ad, seed);
    else rc = usage_error("unknown command \"%s\"", a->cmd);
done:
    samda_adapter_free(ad);
    samda_model_close(m);
    return rc;
}

int cli_adapter_main(int argc, char **argv)
{
    adapter_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK) return rc;
    if (arg_has(&a, "help") || !strcmp(a.cmd, "help") || !strcmp(a.cmd, "--help")) {
        fputs(usage_text, stdout);
        return CLI_EXIT_OK;
    }
    uint64_t seed = 1;
    if (arg_has(&a, "seed")) {
        const char *s = arg_str(&a, "seed", "");
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (*end || errno || !*s) return usage_error("--seed must be an unsigned integer");
        seed = v;
    }
    if (!strcmp(a.cmd, "pretrain")) return cmd_pretrain(&a, seed);
    return cmd_with_checkpoint(&a, seed);
}
