/* Safe adaptation (docs/adaptation.md, "Safe adaptation"): the mask metrics on hand-made masks
 * (Dice, HD95 in pixels and mm, area difference, empty masks); samda_adapter_evaluate's HD95 in mm
 * from a NAME.json sidecar; the box guard of supervised training (box Dice never below the parent's
 * on the guard cases; after a rollback prompted decoding is the parent's exactly); the acceptance
 * rule of test-time adaptation (it alone rejects a harmful run, and lets a harmless one through).
 * A tiny SAM with deterministic random weights: no fixture needed. */
#include "adapter_internal.h"
#include "model.h"
#include "state_dict.h"
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NEAR
#include "tiny_sam.h"
#include "check.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using samda_test::params_of;
using samda_test::same;
using samda_test::write_dataset;

std::string g_config, g_dir;

// ---- mask metrics on hand-made masks ------------------------------------------------------------

std::vector<uint8_t> rect(int rows, int cols, int r0, int c0, int h, int w)
{
    std::vector<uint8_t> m((size_t)rows * cols, 0);
    for (int r = r0; r < r0 + h; r++)
        for (int c = c0; c < c0 + w; c++)
            m[(size_t)r * cols + c] = 1;
    return m;
}

void test_mask_metrics()
{
    const int R = 40, C = 50;
    samda_mask_metrics mm;
    samda_error err{};
    // identical: Dice 1, HD95 0, no area difference
    auto g = rect(R, C, 10, 10, 10, 10);
    CHECK_EQ(samda_mask_metrics_compute(g.data(), g.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK_NEAR(mm.dice, 1.0, 1e-12);
    CHECK_NEAR(mm.hd95, 0.0, 1e-12);
    CHECK_NEAR(mm.volume_diff_pct, 0.0, 1e-12);
    // shifted by 3 rows: the top row of one is 3 rows from the other's (36 boundary pixels, 10
    // of them at 3 rows, so the 95th percentile is 3); in mm with 2.0 x 0.5 mm pixels: 6
    auto p = rect(R, C, 13, 10, 10, 10);
    CHECK_EQ(samda_mask_metrics_compute(p.data(), g.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK_NEAR(mm.hd95, 3.0, 1e-9);
    CHECK_NEAR(mm.dice, 2.0 * 70 / 200, 1e-12);
    CHECK_NEAR(mm.volume_diff_pct, 0.0, 1e-12);
    const double sp[2] = {2.0, 0.5};
    CHECK_EQ(samda_mask_metrics_compute(p.data(), g.data(), R, C, sp, &mm, &err), SAMDA_OK);
    CHECK_NEAR(mm.hd95, 6.0, 1e-9);
    // dilated by 2 on every side: 14 x 14 against 10 x 10: area +96 %, HD95 between 2 and sqrt(8)
    auto d = rect(R, C, 8, 8, 14, 14);
    CHECK_EQ(samda_mask_metrics_compute(d.data(), g.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK_NEAR(mm.volume_diff_pct, 96.0, 1e-9);
    CHECK(mm.hd95 >= 2.0 && mm.hd95 <= std::sqrt(8.0) + 1e-9);
    CHECK_EQ(mm.n_pred, 196);
    CHECK_EQ(mm.n_gt, 100);
    CHECK_EQ(mm.n_inter, 100);
    // a far-away false positive blob: HD95 grows though Dice barely moves
    auto fp = g;
    for (int r = 30; r < 33; r++)
        for (int c = 40; c < 48; c++)
            fp[(size_t)r * C + c] = 1;
    CHECK_EQ(samda_mask_metrics_compute(fp.data(), g.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK(mm.hd95 > 15);
    // empty prediction: HD95 undefined, area -100 %, Dice 0
    std::vector<uint8_t> z((size_t)R * C, 0);
    CHECK_EQ(samda_mask_metrics_compute(z.data(), g.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK(std::isnan(mm.hd95));
    CHECK_NEAR(mm.volume_diff_pct, -100.0, 1e-12);
    CHECK_NEAR(mm.dice, 0.0, 1e-12);
    // empty ground truth: area difference undefined too; both empty: Dice 1
    CHECK_EQ(samda_mask_metrics_compute(g.data(), z.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK(std::isnan(mm.hd95) && std::isnan(mm.volume_diff_pct));
    CHECK_EQ(samda_mask_metrics_compute(z.data(), z.data(), R, C, nullptr, &mm, &err), SAMDA_OK);
    CHECK_NEAR(mm.dice, 1.0, 1e-12);
    // refusals
    const double bad[2] = {0.0, 1.0};
    CHECK_EQ(samda_mask_metrics_compute(g.data(), g.data(), R, C, bad, &mm, &err), SAMDA_EINVAL);
    CHECK_EQ(samda_mask_metrics_compute(nullptr, g.data(), R, C, nullptr, &mm, &err), SAMDA_EINVAL);
}

// ---- a tiny model and synthetic slices ----------------------------------------------------------

samda_model *tiny(uint64_t seed)
{
    return samda_test::tiny_model(g_config, seed);
}

samda_adapter *fresh(samda_model *m)
{
    return samda_test::two_label_adapter(m, 8, 2);
}

std::string eval_json(samda_model *m, samda_adapter *a, const std::string &dir, samda_train_prompt pr)
{
    char *json = nullptr;
    samda_error err{};
    if (samda_adapter_evaluate(m, a, dir.c_str(), pr, 0, &json, nullptr, &err) != SAMDA_OK)
        fprintf(stderr, "evaluate: %s\n", err.message);
    std::string s = json ? json : "";
    free(json);
    return s;
}

void test_eval_units()
{
    const std::string d = g_dir + "/units";
    write_dataset(d, 3, 96, 21, 10);
    samda_model *m = tiny(7);
    samda_adapter *a = fresh(m);
    std::string j = eval_json(m, a, d, SAMDA_TRAIN_PROMPT_BOX);
    CHECK(j.find("\"hd95_unit\":\"px\"") != std::string::npos);
    CHECK(j.find("\"spacing_known\":0") != std::string::npos);
    CHECK(j.find("\"hd95\":{") != std::string::npos);
    CHECK(j.find("\"volume_diff_pct\":{") != std::string::npos);
    CHECK(j.find("\"hd95_undefined\":") != std::string::npos);
    CHECK(j.find("\"mean_dice\":") != std::string::npos);
    // every case with a sidecar: mm
    for (int i = 0; i < 3; i++) {
        std::ofstream f(d + "/case_00" + std::to_string(i) + ".json");
        f << "{\"spacing\": [0.7, 0.7]}";
    }
    std::string jm = eval_json(m, a, d, SAMDA_TRAIN_PROMPT_BOX);
    CHECK(jm.find("\"hd95_unit\":\"mm\"") != std::string::npos);
    CHECK(jm.find("\"spacing_known\":3") != std::string::npos);
    // same masks, so the mean HD95 in mm is 0.7 times that in pixels
    auto mean_hd = [](const std::string &s) {
        const size_t k = s.find("\"mean_hd95\":");
        return k == std::string::npos ? NAN : std::strtod(s.c_str() + k + 12, nullptr);
    };
    CHECK(std::isfinite(mean_hd(j)));
    CHECK_NEAR(mean_hd(jm), 0.7 * mean_hd(j), 1e-6 * (1 + mean_hd(j)));
    // a malformed sidecar is refused, naming it
    {
        std::ofstream f(d + "/case_001.json");
        f << "{\"spacing\": [0, \"x\"]}";
    }
    char *json = nullptr;
    samda_error err{};
    CHECK_EQ(samda_adapter_evaluate(m, a, d.c_str(), SAMDA_TRAIN_PROMPT_BOX, 0, &json, nullptr, &err), SAMDA_EINVAL);
    CHECK(std::string(err.message).find("case_001.json") != std::string::npos);
    free(json);
    samda_adapter_free(a);
    samda_model_close(m);
}

// ---- the box guard ------------------------------------------------------------------------------

/* Box-prompted low-res logits of the adapter's prompted set on one embedding. */
at::Tensor box_logits(samda_model *m, samda_adapter *a, samda_embedding *e)
{
    const float box[4] = {20, 30, 70, 60};
    samda_model_prompt pr{};
    pr.box = box;
    std::vector<float> low(1 << 16), iou(8);
    samda_model_decode_out out{};
    out.low_res_logits = low.data();
    out.low_res_len = low.size();
    out.iou = iou.data();
    out.iou_len = iou.size();
    samda_error err{};
    if (samda_adapter_decode(m, a, e, &pr, 1, 0, -1, &out, &err) != SAMDA_OK)
        fprintf(stderr, "decode: %s\n", err.message);
    return at::from_blob(low.data(), {(int64_t)low.size()}, at::kFloat).clone();
}

void test_box_guard()
{
    const std::string tr = g_dir + "/guard";
    write_dataset(tr, 10, 96, 31, 10);
    samda_model *m = tiny(7);
    samda_train_params tp;
    samda_train_params_init(&tp);
    tp.data_dir = tr.c_str();
    tp.epochs = 3;
    tp.batch = 4;
    tp.val_split = 0.3;
    tp.patience = 0;
    tp.progress = 0;
    // whatever the run does, box Dice on the guard cases does not fall below the parent's
    for (double lr : {1e-2, 3.0}) {
        samda_adapter *a = fresh(m);
        std::vector<uint8_t> px(96 * 96, 100);
        samda_model_image img{px.data(), 96, 96, 1, SAMDA_MODEL_PIXEL_U8};
        samda_model_encode_item it{};
        it.image = &img;
        samda_embedding *e = nullptr;
        samda_model_encode(m, &it, 1, &e, nullptr);
        at::Tensor before = box_logits(m, a, e);
        std::vector<at::Tensor> p0 = params_of(a);
        tp.lr = lr;
        samda_train_report rep{};
        samda_error err{};
        CHECK_EQ(samda_adapter_train(m, a, &tp, &rep, &err), SAMDA_OK);
        printf("lr %g: box Dice parent %.4f base %.4f after %.4f, rolled back %d (%d label epochs), best epoch %d\n",
               lr, rep.box_dice_parent, rep.box_dice_base, rep.box_dice_after, rep.box_rolled_back,
               rep.label_token_epochs, rep.best_epoch);
        CHECK_EQ(rep.box_guard, 1);
        CHECK_EQ(rep.box_guard_cases, 3);
        CHECK(rep.box_dice_after >= rep.box_dice_parent);
        // the result is never below the parent on the validation cases either (prompt-free here)
        CHECK(rep.best_epoch > 0 || rep.box_rolled_back || same(p0, params_of(a)));
        // a fresh adapter is the identity: parent and base agree
        CHECK_NEAR(rep.box_dice_parent, rep.box_dice_base, 1e-9);
        CHECK(std::string(samda_adapter_metadata(a, "provenance")).find("\"box_rolled_back\":") != std::string::npos);
        if (rep.box_rolled_back) {
            // prompted decoding is the parent's exactly
            CHECK(box_logits(m, a, e).equal(before));
            CHECK_EQ(rep.best_epoch, 0);
        }
        if (lr > 1)
            CHECK_EQ(rep.box_rolled_back, 1);  // lr 3 wrecks prompted decoding in every epoch
        samda_embedding_release(e);
        samda_adapter_free(a);
    }
    samda_model_close(m);
}

// A trained adapter (it has a version) adapted with fewer than four held-out cases: only its label
// tokens move, so box-prompted decoding is the parent's exactly, and the report says why.
void test_box_guard_few_cases()
{
    const std::string tr = g_dir + "/guard_few", more = g_dir + "/guard_more";
    write_dataset(tr, 10, 96, 51, 10);
    write_dataset(more, 5, 96, 52, 40);
    samda_model *m = tiny(7);
    samda_adapter *a0 = fresh(m);
    samda_train_params tp;
    samda_train_params_init(&tp);
    tp.data_dir = tr.c_str();
    tp.epochs = 2;
    tp.batch = 4;
    tp.lr = 1e-2;
    tp.val_split = 0;
    tp.patience = 0;
    tp.progress = 0;
    CHECK_EQ(samda_adapter_train(m, a0, &tp, nullptr, nullptr), SAMDA_OK);
    const std::string path = g_dir + "/trained.safetensors";
    CHECK_EQ(samda_adapter_save(a0, path.c_str(), nullptr), SAMDA_OK);
    samda_adapter_free(a0);
    samda_adapter *a = samda_adapter_load(m, path.c_str(), nullptr);
    CHECK(a != nullptr);
    if (!a) {
        samda_model_close(m);
        return;
    }
    std::vector<uint8_t> px(96 * 96, 100);
    samda_model_image img{px.data(), 96, 96, 1, SAMDA_MODEL_PIXEL_U8};
    samda_model_encode_item it{};
    it.image = &img;
    samda_embedding *e = nullptr;
    samda_model_encode(m, &it, 1, &e, nullptr);
    const at::Tensor before = box_logits(m, a, e);
    tp.data_dir = more.c_str();
    tp.val_split = 0.2;  // 5 cases: at least two held out, still fewer than four
    tp.lr = 3e-2;
    samda_train_report rep{};
    CHECK_EQ(samda_adapter_train(m, a, &tp, &rep, nullptr), SAMDA_OK);
    printf("few cases: %d held out, rolled back %d, label epochs %d, box %.4f -> %.4f\n", rep.n_val,
           rep.box_rolled_back, rep.label_token_epochs, rep.box_dice_parent, rep.box_dice_after);
    CHECK_EQ(rep.n_val, 2);
    CHECK_EQ(rep.box_rolled_back, 1);
    CHECK_EQ(rep.label_token_epochs, 2);
    CHECK(box_logits(m, a, e).equal(before));
    CHECK(std::string(samda_adapter_metadata(a, "provenance")).find("fewer than 4") != std::string::npos);
    samda_embedding_release(e);
    samda_adapter_free(a);
    samda_model_close(m);
}

// ---- the acceptance rule of test-time adaptation ------------------------------------------------

void test_tta_acceptance()
{
    const std::string tr = g_dir + "/tta_train", unl = g_dir + "/tta_unl";
    write_dataset(tr, 8, 96, 41, 10);
    write_dataset(unl, 4, 96, 42, 30, false);
    samda_model *m = tiny(7);
    samda_adapter *a = fresh(m);
    samda_train_params tp;
    samda_train_params_init(&tp);
    tp.data_dir = tr.c_str();
    tp.epochs = 8;
    tp.lr = 1e-2;
    tp.batch = 4;
    tp.val_split = 0;
    tp.patience = 0;
    tp.progress = 0;
    tp.prompt = SAMDA_TRAIN_PROMPT_FREE;
    CHECK_EQ(samda_adapter_train(m, a, &tp, nullptr, nullptr), SAMDA_OK);

    samda_tta_params pp;
    samda_tta_params_init(&pp);
    pp.progress = 0;
    pp.steps = 4;
    pp.check_every = 4;
    // the old guards off: only the acceptance rule can stop a harmful run
    pp.max_iou_drop = 1e9;
    pp.min_area_ratio = 0;
    pp.max_area_ratio = 1e9;
    samda_tta_report r{};
    samda_error err{};
    {
        samda_tta_params q = pp;
        q.lr = 5.0;
        samda_adapter *t = samda_adapter_clone(a, nullptr);
        std::vector<at::Tensor> start = params_of(t);
        CHECK_EQ(samda_adapter_tta_dir(m, t, unl.c_str(), 0, &q, &r, &err), SAMDA_OK);
        printf("lr 5: %s (agreement %.3f, flip %.3f, consistency %.3f -> %.3f)\n", r.decision, r.confident_agreement,
               r.confident_flip, r.consistency_before, r.consistency_after);
        CHECK_EQ(r.reverted, 1);
        CHECK(std::strncmp(r.decision, "rejected", 8) == 0);
        CHECK(same(start, params_of(t)));
        samda_adapter_free(t);
    }
    {
        // the same harmful run with the rule made lax is accepted: the rule is what rejected it
        samda_tta_params q = pp;
        q.lr = 5.0;
        q.min_confident_agreement = 0;
        q.max_confident_flip = 1e9;
        q.max_consistency_drop = 1;
        samda_adapter *t = samda_adapter_clone(a, nullptr);
        std::vector<at::Tensor> start = params_of(t);
        CHECK_EQ(samda_adapter_tta_dir(m, t, unl.c_str(), 0, &q, &r, &err), SAMDA_OK);
        CHECK_EQ(r.reverted, 0);
        CHECK(std::string(r.decision) == "accepted");
        CHECK(!same(start, params_of(t)));
        samda_adapter_free(t);
    }
    {
        // a gentle run passes the default rule, with its measures reported
        samda_tta_params q = pp;
        q.lr = 1e-5;
        samda_adapter *t = samda_adapter_clone(a, nullptr);
        CHECK_EQ(samda_adapter_tta_dir(m, t, unl.c_str(), 0, &q, &r, &err), SAMDA_OK);
        printf("lr 1e-5: %s (agreement %.3f, flip %.3f, consistency %.3f -> %.3f)\n", r.decision,
               r.confident_agreement, r.confident_flip, r.consistency_before, r.consistency_after);
        CHECK_EQ(r.reverted, 0);
        CHECK(r.confident_agreement > 0.95);
        CHECK(r.consistency_before > 0 && r.consistency_before <= 1);
        CHECK(std::string(samda_adapter_metadata(t, "provenance")).find("\"decision\":\"accepted") != std::string::npos);
        samda_adapter_free(t);
    }
    pp.min_confident_agreement = 2;  // outside [0, 1]
    CHECK_EQ(samda_adapter_tta_dir(m, a, unl.c_str(), 0, &pp, &r, &err), SAMDA_EINVAL);
    samda_adapter_free(a);
    samda_model_close(m);
}

}  // namespace

int main()
{
    char tmpl[] = "/tmp/samda_test_safety_XXXXXX";
    if (!mkdtemp(tmpl))
        return 1;
    g_dir = tmpl;
    g_config = samda_test::write_tiny_config(g_dir);
    RUN(test_mask_metrics);
    RUN(test_eval_units);
    RUN(test_box_guard);
    RUN(test_box_guard_few_cases);
    RUN(test_tta_acceptance);
    std::string cmd = "rm -rf " + g_dir;
    if (system(cmd.c_str()) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir.c_str());
    return samda_test::summary();
}
