// model/adapter_cli.cpp: `samda adapter train | eval | tta | info | pretrain`, over model.h only
// (no libtorch headers: cheap to compile). The samda CLI forwards argv to samda_adapter_cli_main().
#include "model.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

const char kUsage[] =
    "usage: samda adapter COMMAND [options]\n"
    "  info     --checkpoint F [--adapter A | --rank R --tokens T --labels L,..]\n"
    "  train    --checkpoint F --data DIR --out A2 [--adapter-in A] [--epochs N] [--lr X] [--rank R]\n"
    "           [--tokens T] [--prompt free|box|mixed|point] [--val-split X] [--seed S] [--batch B]\n"
    "           [--labels liver,kidney,spleen,aorta,inferior_vena_cava] [--window LEVEL,WIDTH]\n"
    "           [--max-cases N] [--patience N] [--scope adapter|decoder|full] [--eval-data DIR]\n"
    "           [--place all|LIST]  (LIST of self_attn,token_to_image,mlp,image_to_token,tokens_self,\n"
    "           tokens_image,embed; with --adapter-in: the parts it lacks are added, freshly initialised)\n"
    "           (scope decoder/full also trains the base in memory only: use --eval-data to score it)\n"
    "  eval     --checkpoint F [--adapter A] --data DIR [--prompt free|box] [--max-cases N]\n"
    "  tta      --checkpoint F --adapter A --data DIR --out A2 [--steps N] [--lr X] [--seed S] [--max-cases N]\n"
    "           [--anchor W]  (weight keeping box-prompted decoding as it was; default 0.3, 0 = off)\n"
    "  pretrain --config C --data DIR --out base.pth [--epochs N] [--lr X] [--seed S] [--batch B]\n"
    "           [--val-split X] [--max-seconds S] [--half]   (trains a whole SAM from random weights)\n"
    "common: [--config C] [--device cpu|auto|N] [--threads N] [--quiet]\n"
    "NAME.image.npy holds H x W raw values (CT: HU); NAME.mask.npy the label ids (phantom ids: liver 1,\n"
    "kidney 2, spleen 3, aorta 4, inferior_vena_cava 5). Windows default to CT level 50, width 400.\n";

struct Builtin {
    const char *name;
    int value;
    const char *code, *meaning;
    uint8_t rgb[3];
};
const Builtin kBuiltin[] = {{"liver", 1, "10200004", "Liver", {221, 130, 101}},
                            {"kidney", 2, "64033007", "Kidney", {185, 102, 83}},
                            {"spleen", 3, "78961009", "Spleen", {157, 108, 162}},
                            {"aorta", 4, "15825003", "Aorta", {224, 97, 76}},
                            {"inferior_vena_cava", 5, "64131007", "Inferior vena cava", {0, 151, 206}}};

/* --place: "all" or a comma-separated list of part names; false with *e set on an unknown name. */
bool parse_place(const std::string &s, unsigned *out, std::string *e)
{
    static const struct { const char *name; unsigned bit; } parts[] = {
        {"self_attn", SAMDA_ADAPTER_PLACE_SELF_ATTN},     {"token_to_image", SAMDA_ADAPTER_PLACE_TOKEN2IMAGE},
        {"mlp", SAMDA_ADAPTER_PLACE_MLP},                 {"image_to_token", SAMDA_ADAPTER_PLACE_IMAGE},
        {"tokens_self", SAMDA_ADAPTER_PLACE_TOKENS_SELF}, {"tokens_image", SAMDA_ADAPTER_PLACE_TOKENS_IMAGE},
        {"embed", SAMDA_ADAPTER_PLACE_EMBED}};
    if (s == "all") {
        *out = SAMDA_ADAPTER_PLACE_ALL;
        return true;
    }
    unsigned bits = 0;
    size_t i = 0;
    while (i <= s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos)
            j = s.size();
        const std::string name = s.substr(i, j - i);
        bool found = false;
        for (const auto &p : parts)
            if (name == p.name) {
                bits |= p.bit;
                found = true;
            }
        if (!found) {
            *e = "--place: unknown part \"" + name + "\" (all, or a list of self_attn, token_to_image, mlp, "
                 "image_to_token, tokens_self, tokens_image, embed)";
            return false;
        }
        i = j + 1;
    }
    *out = bits;
    return true;
}

struct Args {
    std::string cmd;
    std::map<std::string, std::string> kv;
    bool has(const char *k) const { return kv.count(k) != 0; }
    std::string str(const char *k, const char *def = "") const
    {
        auto it = kv.find(k);
        return it == kv.end() ? def : it->second;
    }
};

const char *const kFlags[] = {"checkpoint", "config", "adapter", "adapter-in", "out", "data", "epochs", "lr",
                              "rank", "tokens", "prompt", "val-split", "seed", "batch", "labels", "window",
                              "max-cases", "patience", "scope", "steps", "eval-data", "device", "threads", "max-seconds",
                              "place", "anchor"};
const char *const kSwitches[] = {"half", "quiet", "help"};

int usage_error(const std::string &msg)
{
    fprintf(stderr, "samda adapter: %s\n%s", msg.c_str(), kUsage);
    return 2;
}

bool parse_args(int argc, char **argv, Args *a, std::string *err)
{
    if (argc < 2) {
        *err = "missing command";
        return false;
    }
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        std::string s = argv[i];
        if (s.compare(0, 2, "--") != 0) {
            *err = "unexpected argument \"" + s + "\"";
            return false;
        }
        s = s.substr(2);
        std::string v;
        bool has_v = false;
        size_t eq = s.find('=');
        if (eq != std::string::npos) {
            v = s.substr(eq + 1);
            s = s.substr(0, eq);
            has_v = true;
        }
        bool is_switch = false, is_flag = false;
        for (const char *f : kSwitches)
            is_switch |= s == f;
        for (const char *f : kFlags)
            is_flag |= s == f;
        if (is_switch) {
            a->kv[s] = "1";
            continue;
        }
        if (!is_flag) {
            *err = "unknown option --" + s;
            return false;
        }
        if (!has_v) {
            if (i + 1 >= argc) {
                *err = "--" + s + " needs a value";
                return false;
            }
            v = argv[++i];
        }
        a->kv[s] = v;
    }
    return true;
}

bool to_long(const std::string &s, long lo, long hi, long *out)
{
    char *end = nullptr;
    errno = 0;
    long v = strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool to_double(const std::string &s, double lo, double hi, double *out)
{
    char *end = nullptr;
    double v = strtod(s.c_str(), &end);
    if (s.empty() || *end || !std::isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

#define NUM_OPT(args, key, lo, hi, dst, T)                                                                  \
    do {                                                                                                    \
        if ((args).has(key)) {                                                                              \
            T v_;                                                                                           \
            if (!to_##T((args).str(key), lo, hi, &v_))                                                      \
                return usage_error(std::string("--") + key + " must be a number in " #lo ".." #hi);         \
            dst = v_;                                                                                       \
        }                                                                                                   \
    } while (0)

samda_model *open_model(const Args &a, const char *ckpt, bool random, uint64_t seed)
{
    samda_model_params mp;
    samda_model_params_init(&mp);
    std::string cfg = a.str("config");
    mp.checkpoint_path = ckpt;
    mp.config_path = cfg.empty() ? nullptr : cfg.c_str();
    if (!cfg.empty() && random)
        mp.arch = "custom";
    mp.random_weights = random ? 1 : 0;
    mp.seed = seed;
    std::string dev = a.str("device", "auto");
    long v = 0;
    mp.device = dev == "cpu" ? SAMDA_MODEL_DEVICE_CPU : dev == "auto" ? SAMDA_MODEL_DEVICE_AUTO
                : to_long(dev, 0, 64, &v)                             ? (int)v
                                                                      : SAMDA_MODEL_DEVICE_AUTO;
    if (a.has("threads") && to_long(a.str("threads"), 1, 1024, &v))
        mp.n_threads = (int)v;
    samda_error err{};
    samda_model *m = samda_model_open(&mp, &err);
    if (!m)
        fprintf(stderr, "samda adapter: %s\n", err.message);
    return m;
}

bool parse_prompt(const std::string &s, samda_train_prompt *out)
{
    if (s == "free")
        *out = SAMDA_TRAIN_PROMPT_FREE;
    else if (s == "box")
        *out = SAMDA_TRAIN_PROMPT_BOX;
    else if (s == "mixed")
        *out = SAMDA_TRAIN_PROMPT_MIXED;
    else if (s == "point")
        *out = SAMDA_TRAIN_PROMPT_POINT;
    else
        return false;
    return true;
}

/** Labels for a new adapter from --labels and --window. */
bool make_labels(const Args &a, std::vector<samda_adapter_label> *out, std::string *err)
{
    std::string list = a.str("labels", "liver,kidney,spleen,aorta");
    double level = 50, width = 400;
    if (a.has("window")) {
        std::string w = a.str("window");
        size_t c = w.find(',');
        if (c == std::string::npos || !to_double(w.substr(0, c), -5000, 5000, &level) ||
            !to_double(w.substr(c + 1), 1, 10000, &width)) {
            *err = "--window must be LEVEL,WIDTH (HU)";
            return false;
        }
    }
    size_t s = 0;
    while (s <= list.size()) {
        size_t e = list.find(',', s);
        if (e == std::string::npos)
            e = list.size();
        std::string name = list.substr(s, e - s);
        const Builtin *b = nullptr;
        for (const auto &x : kBuiltin)
            if (name == x.name)
                b = &x;
        if (!b) {
            *err = "unknown label \"" + name + "\" (known: liver, kidney, spleen, aorta, inferior_vena_cava)";
            return false;
        }
        samda_adapter_label l{};
        snprintf(l.name, sizeof l.name, "%s", b->name);
        l.value = b->value;
        snprintf(l.category_scheme, sizeof l.category_scheme, "SCT");
        snprintf(l.category_code, sizeof l.category_code, "123037004");
        snprintf(l.category_meaning, sizeof l.category_meaning, "Anatomical Structure");
        snprintf(l.type_scheme, sizeof l.type_scheme, "SCT");
        snprintf(l.type_code, sizeof l.type_code, "%s", b->code);
        snprintf(l.type_meaning, sizeof l.type_meaning, "%s", b->meaning);
        memcpy(l.rgb, b->rgb, 3);
        l.window_kind = SAMDA_WINDOW_CT;
        l.window_a = level;
        l.window_b = width;
        out->push_back(l);
        s = e + 1;
    }
    return true;
}

void print_info(const samda_model *m, const samda_adapter *ad)
{
    samda_model_info mi;
    samda_model_get_info(m, &mi, nullptr);
    samda_adapter_info ai;
    samda_adapter_get_info(ad, &ai, nullptr);
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

int cmd_main(const Args &a)
{
    const bool quiet = a.has("quiet");
    samda_error err{};
    uint64_t seed = 1;
    if (a.has("seed")) {
        char *end = nullptr;
        errno = 0;
        unsigned long long v = strtoull(a.str("seed").c_str(), &end, 0);
        if (*end || errno || a.str("seed").empty())
            return usage_error("--seed must be an unsigned integer");
        seed = v;
    }
    if (a.cmd == "pretrain") {
        if (!a.has("config") || !a.has("data") || !a.has("out"))
            return usage_error("pretrain needs --config, --data and --out");
        samda_model *m = open_model(a, nullptr, true, seed);
        if (!m)
            return 1;
        samda_train_params tp;
        samda_train_params_init(&tp);
        std::string data = a.str("data");
        tp.data_dir = data.c_str();
        tp.scope = SAMDA_TRAIN_SCOPE_FULL;
        tp.prompt = SAMDA_TRAIN_PROMPT_MIXED;
        tp.lr = 3e-4;
        tp.seed = seed;
        tp.patience = 0;
        tp.val_split = 0.1;
        tp.progress = quiet ? 0 : -1;
        NUM_OPT(a, "epochs", 1, 100000, tp.epochs, long);
        NUM_OPT(a, "lr", 1e-9, 1.0, tp.lr, double);
        NUM_OPT(a, "batch", 1, 1024, tp.batch, long);
        NUM_OPT(a, "val-split", 0.0, 0.9, tp.val_split, double);
        NUM_OPT(a, "max-seconds", 0.0, 1e7, tp.max_seconds, double);
        NUM_OPT(a, "max-cases", 0, 10000000, tp.max_cases, long);
        samda_train_report rep;
        int rc = 0;
        if (samda_adapter_train(m, nullptr, &tp, &rep, &err) != SAMDA_OK ||
            samda_model_save(m, a.str("out").c_str(), a.has("half"), &err) != SAMDA_OK) {
            fprintf(stderr, "samda adapter: %s\n", err.message);
            rc = 1;
        } else {
            printf("{\"out\":\"%s\",\"cases\":%d,\"epochs_run\":%d,\"best_epoch\":%d,\"val_dice_box\":%.4f,"
                   "\"seconds\":%.1f,\"seconds_per_epoch\":%.1f}\n",
                   a.str("out").c_str(), rep.n_cases, rep.epochs_run, rep.best_epoch, rep.best_val_dice,
                   rep.total_seconds, rep.seconds_per_epoch);
        }
        samda_model_close(m);
        return rc;
    }
    if (!a.has("checkpoint"))
        return usage_error(a.cmd + " needs --checkpoint");
    std::string ckpt = a.str("checkpoint");
    samda_model *m = open_model(a, ckpt.c_str(), false, 1);
    if (!m)
        return 1;
    int rc = 0;
    samda_adapter *ad = nullptr;
    do {
        std::string in = a.has("adapter") ? a.str("adapter") : a.str("adapter-in");
        if (!in.empty()) {
            ad = samda_adapter_load(m, in.c_str(), &err);
            if (!ad) {
                fprintf(stderr, "samda adapter: %s\n", err.message);
                rc = 1;
                break;
            }
        }
        unsigned place = 0;
        if (a.has("place")) {
            std::string e;
            if (!parse_place(a.str("place"), &place, &e)) {
                rc = usage_error(e);
                break;
            }
        }
        if (ad && place && (a.cmd == "info" || a.cmd == "train") && samda_adapter_extend(ad, place, &err) != SAMDA_OK) {
            fprintf(stderr, "samda adapter: %s\n", err.message);
            rc = 1;
            break;
        }
        if (a.cmd == "info" || a.cmd == "train") {
            if (!ad) {
                samda_adapter_params ap;
                samda_adapter_params_init(&ap);
                if (place)
                    ap.placement = place;
                NUM_OPT(a, "rank", 1, 256, ap.rank, long);
                NUM_OPT(a, "tokens", 1, 64, ap.n_tokens, long);
                std::vector<samda_adapter_label> labels;
                std::string e;
                if (!make_labels(a, &labels, &e)) {
                    rc = usage_error(e);
                    break;
                }
                ap.labels = labels.data();
                ap.n_labels = labels.size();
                ap.seed = seed;
                ad = samda_adapter_new(m, &ap, &err);
                if (!ad) {
                    fprintf(stderr, "samda adapter: %s\n", err.message);
                    rc = 1;
                    break;
                }
            }
        }
        if (a.cmd == "info") {
            print_info(m, ad);
        } else if (a.cmd == "train") {
            if (!a.has("data") || !a.has("out")) {
                rc = usage_error("train needs --data and --out");
                break;
            }
            samda_train_params tp;
            samda_train_params_init(&tp);
            std::string data = a.str("data");
            tp.data_dir = data.c_str();
            tp.seed = seed;
            tp.progress = quiet ? 0 : -1;
            if (a.has("prompt") && !parse_prompt(a.str("prompt"), &tp.prompt)) {
                rc = usage_error("--prompt must be free, box, mixed or point");
                break;
            }
            if (a.has("scope")) {
                std::string s = a.str("scope");
                if (s == "adapter")
                    tp.scope = SAMDA_TRAIN_SCOPE_ADAPTER;
                else if (s == "decoder")
                    tp.scope = SAMDA_TRAIN_SCOPE_DECODER;
                else if (s == "full")
                    tp.scope = SAMDA_TRAIN_SCOPE_FULL;
                else {
                    rc = usage_error("--scope must be adapter, decoder or full");
                    break;
                }
            }
            NUM_OPT(a, "epochs", 1, 100000, tp.epochs, long);
            NUM_OPT(a, "lr", 1e-9, 1.0, tp.lr, double);
            NUM_OPT(a, "batch", 1, 1024, tp.batch, long);
            NUM_OPT(a, "val-split", 0.0, 0.9, tp.val_split, double);
            NUM_OPT(a, "patience", 0, 100000, tp.patience, long);
            NUM_OPT(a, "max-cases", 0, 10000000, tp.max_cases, long);
            samda_train_report rep;
            if (samda_adapter_train(m, ad, &tp, &rep, &err) != SAMDA_OK ||
                samda_adapter_save(ad, a.str("out").c_str(), &err) != SAMDA_OK) {
                fprintf(stderr, "samda adapter: %s\n", err.message);
                rc = 1;
                break;
            }
            // Held-out evaluation in this process (with scope decoder/full the changed base exists only here).
            double test_free = -1, test_box = -1;
            if (a.has("eval-data")) {
                const std::string ed = a.str("eval-data");
                if (samda_adapter_evaluate(m, ad, ed.c_str(), SAMDA_TRAIN_PROMPT_FREE, 0, nullptr, &test_free, &err) !=
                        SAMDA_OK ||
                    samda_adapter_evaluate(m, ad, ed.c_str(), SAMDA_TRAIN_PROMPT_BOX, 0, nullptr, &test_box, &err) !=
                        SAMDA_OK) {
                    fprintf(stderr, "samda adapter: %s\n", err.message);
                    rc = 1;
                    break;
                }
            }
            printf("{\"test_dice_free\":%.4f,\"test_dice_box\":%.4f,", test_free, test_box);
            printf("\"out\":\"%s\",\"cases\":%d,\"train\":%d,\"val\":%d,\"epochs_run\":%d,\"best_epoch\":%d,"
                   "\"val_dice\":%.4f,\"trainable_params\":%" PRId64 ",\"encode_seconds\":%.1f,"
                   "\"seconds_per_epoch\":%.2f,\"seconds\":%.1f,\"peak_rss_mb\":%.0f}\n",
                   a.str("out").c_str(), rep.n_cases, rep.n_train, rep.n_val, rep.epochs_run, rep.best_epoch,
                   rep.best_val_dice, rep.n_trainable, rep.encode_seconds, rep.seconds_per_epoch, rep.total_seconds,
                   rep.peak_bytes / 1048576.0);
        } else if (a.cmd == "eval") {
            if (!a.has("data")) {
                rc = usage_error("eval needs --data");
                break;
            }
            samda_train_prompt pr = ad ? SAMDA_TRAIN_PROMPT_FREE : SAMDA_TRAIN_PROMPT_BOX;
            if (a.has("prompt") && (!parse_prompt(a.str("prompt"), &pr) ||
                                    (pr != SAMDA_TRAIN_PROMPT_FREE && pr != SAMDA_TRAIN_PROMPT_BOX))) {
                rc = usage_error("--prompt must be free or box");
                break;
            }
            long mc = 0;
            if (a.has("max-cases") && !to_long(a.str("max-cases"), 0, 10000000, &mc)) {
                rc = usage_error("--max-cases must be 0..10000000");
                break;
            }
            char *json = nullptr;
            if (samda_adapter_evaluate(m, ad, a.str("data").c_str(), pr, (int)mc, &json, nullptr, &err) != SAMDA_OK) {
                fprintf(stderr, "samda adapter: %s\n", err.message);
                rc = 1;
                break;
            }
            printf("%s\n", json);
            free(json);
        } else if (a.cmd == "tta") {
            if (!ad || !a.has("data") || !a.has("out")) {
                rc = usage_error("tta needs --adapter, --data and --out");
                break;
            }
            samda_tta_params tp;
            samda_tta_params_init(&tp);
            tp.seed = seed;
            tp.progress = quiet ? 0 : -1;
            NUM_OPT(a, "steps", 0, 100000, tp.steps, long);
            NUM_OPT(a, "lr", 1e-9, 1.0, tp.lr, double);
            NUM_OPT(a, "anchor", 0.0, 1000.0, tp.prompt_anchor_weight, double);
            long mc = 0;
            if (a.has("max-cases") && !to_long(a.str("max-cases"), 0, 10000000, &mc)) {
                rc = usage_error("--max-cases must be 0..10000000");
                break;
            }
            samda_tta_report rep;
            if (samda_adapter_tta_dir(m, ad, a.str("data").c_str(), (int)mc, &tp, &rep, &err) != SAMDA_OK ||
                samda_adapter_save(ad, a.str("out").c_str(), &err) != SAMDA_OK) {
                fprintf(stderr, "samda adapter: %s\n", err.message);
                rc = 1;
                break;
            }
            printf("{\"out\":\"%s\",\"steps\":%d,\"reverted\":%s,\"reason\":\"%s\",\"iou_before\":%.4f,"
                   "\"iou_after\":%.4f,\"area_ratio_min\":%.3f,\"area_ratio_max\":%.3f,\"seconds\":%.1f}\n",
                   a.str("out").c_str(), rep.steps_run, rep.reverted ? "true" : "false", rep.reason, rep.iou_before,
                   rep.iou_after, rep.area_ratio_min, rep.area_ratio_max, rep.seconds);
        } else {
            rc = usage_error("unknown command \"" + a.cmd + "\"");
        }
    } while (0);
    samda_adapter_free(ad);
    samda_model_close(m);
    return rc;
}

}  // namespace

extern "C" int samda_adapter_cli_main(int argc, char **argv)
{
    try {
        Args a;
        std::string e;
        if (!parse_args(argc, argv, &a, &e))
            return usage_error(e);
        if (a.has("help") || a.cmd == "help" || a.cmd == "--help") {
            fputs(kUsage, stdout);
            return 0;
        }
        return cmd_main(a);
    } catch (const std::exception &ex) {
        fprintf(stderr, "samda adapter: %s\n", ex.what());
        return 1;
    } catch (...) {
        fprintf(stderr, "samda adapter: unknown failure\n");
        return 1;
    }
}
