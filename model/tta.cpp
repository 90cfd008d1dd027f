// model/tta.cpp: test-time adaptation of an adapter on unlabelled images (SAM-DA): entropy and
// flip-consistency with an EMA teacher, a prompt anchor, guards (predicted IoU, mask areas) and an
// acceptance rule (agreement with the unadapted adapter on its confident pixels, consistency under
// flip and intensity change, per-label rollback) that restore the last good weights when a step
// makes things worse. Shares training's pieces through train_internal.h.
#include "train_internal.h"
#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

using namespace samda;
using namespace samda::train;

namespace {

struct TtaStats {
    double iou = 0;
    std::vector<double> area;  // per label
};

void check_tta_params(const samda_model *m, const samda_adapter *a, size_t n_images, const samda_tta_params *p)
{
    if (!m || !a || !p)
        raise(SAMDA_EINVAL, "model, adapter or params is NULL");
    if (n_images == 0)
        raise(SAMDA_EINVAL, "no images");
    if (p->steps < 0 || p->steps > 100000 || !(p->lr > 0) || !(p->ema >= 0 && p->ema < 1) || p->check_every < 1 ||
        !(p->min_area_ratio >= 0 && p->min_area_ratio < 1 && p->max_area_ratio > 1) || p->max_iou_drop < 0 ||
        !(p->prompt_anchor_weight >= 0))
        raise(SAMDA_EINVAL, "steps 0..100000, lr > 0, ema in [0,1), check_every >= 1, min_area_ratio in [0,1), "
                            "max_area_ratio > 1, max_iou_drop >= 0, prompt_anchor_weight >= 0 are required");
    if (!(p->confident_logit > 0) || !(p->min_confident_agreement >= 0 && p->min_confident_agreement <= 1) ||
        !(p->max_confident_flip >= 0) || !(p->max_consistency_drop >= 0))
        raise(SAMDA_EINVAL, "confident_logit > 0, min_confident_agreement in [0,1], max_confident_flip >= 0 and "
                            "max_consistency_drop >= 0 are required");
}

/* One test-time adaptation run: the student (the adapter), its EMA teacher and the frozen anchor
 * (the adapter as it came), copies matched by name, over the images' embeddings. */
struct Tta {
    const SamImpl *sam;
    samda_adapter *a;
    const std::vector<at::Tensor> *emb, *embf;
    const std::vector<int> *content_w;
    const std::vector<at::Tensor> *embaug;  // intensity-changed views (same geometry); may be empty
    const samda_tta_params *p;
    at::Device dev;
    int L, S;
    int64_t n_labels;
    at::Tensor all_labels;
    std::shared_ptr<AdapterNet> teacher, anchor;
    std::vector<at::Tensor> anchor_logits;  // per image: the anchor's prompt-free low-res logits (CPU)
};

/* Mean predicted IoU and per-label mask area over all images (the guards' measures). */
TtaStats tta_stats(const Tta &t)
{
    at::NoGradGuard ng;
    TtaStats st;
    st.area.assign((size_t)t.n_labels, 0.0);
    for (size_t i = 0; i < t.emb->size(); i++) {
        auto r = adapter_forward_free(*t.sam, *t.a->net, t.a->dense_pe, (*t.emb)[i], t.all_labels);
        st.iou += r.second.mean().item<double>();
        at::Tensor area = (r.first > 0).to(at::kFloat).mean({1, 2, 3}).to(at::kCPU);
        for (int64_t l = 0; l < t.n_labels; l++)
            st.area[(size_t)l] += area[l].item<double>();
    }
    st.iou /= (double)t.emb->size();
    for (auto &v : st.area)
        v /= (double)t.emb->size();
    return st;
}

/* The guards: empty when st is acceptable against start, else why not. */
std::string tta_guard(const Tta &t, const TtaStats &start, const TtaStats &st)
{
    char b[200];
    if (st.iou < start.iou - t.p->max_iou_drop) {
        snprintf(b, sizeof b, "mean predicted IoU fell from %.3f to %.3f (limit %.3f)", start.iou, st.iou,
                 t.p->max_iou_drop);
        return b;
    }
    for (int64_t l = 0; l < t.n_labels; l++) {
        const double a0 = start.area[(size_t)l], a1 = st.area[(size_t)l];
        const bool bad = a0 > 1e-4 ? (a1 < t.p->min_area_ratio * a0 || a1 > t.p->max_area_ratio * a0) : a1 > 0.01;
        if (bad) {
            snprintf(b, sizeof b, "mask area of label \"%s\" went from %.4f to %.4f of the image (%s)",
                     t.a->labels[(size_t)l].name, a0, a1, a1 < a0 ? "collapse" : "explosion");
            return b;
        }
    }
    return std::string();
}

/* Mirror low-res logits back (only the content columns are mirrored). */
at::Tensor tta_unflip(const Tta &t, const at::Tensor &x, int cw)
{
    const int64_t cols = std::max<int64_t>(1, std::min<int64_t>(t.L, std::lround((double)cw * t.L / t.S)));
    if (cols == t.L)
        return x.flip({3});
    return at::cat({x.slice(3, 0, cols).flip({3}), x.slice(3, cols)}, 3);
}

/* The acceptance rule's measures of the current weights, per label. */
struct Accept {
    std::vector<double> agree;  // share of the anchor's confident foreground still foreground
    std::vector<double> flip;   // anchor's confident background now foreground / anchor foreground
    std::vector<double> cons;   // mean Dice between the prediction and those on the other views
};

/* Prompt-free low-res logits (labels x 1 x L x L, CPU) of net on embedding e. */
at::Tensor free_logits(const Tta &t, const AdapterNet &net, const at::Tensor &e)
{
    at::NoGradGuard ng;
    return adapter_forward_free(*t.sam, net, t.a->dense_pe, e, t.all_labels).first.to(at::kCPU);
}

/* Per-label consistency of net: mean over images and views (flip, intensity) of the Dice between
 * the masks on the image and on the view (images where both are empty are left out; 1 when none). */
std::vector<double> consistency(const Tta &t, const AdapterNet &net)
{
    std::vector<double> sum((size_t)t.n_labels, 0.0), cnt((size_t)t.n_labels, 0.0);
    for (size_t i = 0; i < t.emb->size(); i++) {
        at::Tensor m0 = free_logits(t, net, (*t.emb)[i]) > 0;
        std::vector<at::Tensor> views;
        if (!t.embf->empty() && (*t.embf)[i].defined())
            views.push_back(tta_unflip(t, free_logits(t, net, (*t.embf)[i]), (*t.content_w)[i]) > 0);
        if (!t.embaug->empty() && (*t.embaug)[i].defined())
            views.push_back(free_logits(t, net, (*t.embaug)[i]) > 0);
        for (const at::Tensor &mv : views) {
            at::Tensor inter = (m0 & mv).flatten(1).sum(1).to(at::kDouble), tot = (m0.flatten(1).sum(1) + mv.flatten(1).sum(1)).to(at::kDouble);
            for (int64_t l = 0; l < t.n_labels; l++) {
                const double den = tot[l].item<double>();
                if (den > 0) {
                    sum[(size_t)l] += 2 * inter[l].item<double>() / den;
                    cnt[(size_t)l] += 1;
                }
            }
        }
    }
    for (size_t l = 0; l < sum.size(); l++)
        sum[l] = cnt[l] > 0 ? sum[l] / cnt[l] : 1.0;
    return sum;
}

/* The acceptance measures of the adapter's current weights against the anchor's predictions. */
Accept measure_accept(const Tta &t)
{
    const double c = t.p->confident_logit;
    std::vector<double> cf((size_t)t.n_labels, 0), kept(cf), cb_fg(cf), afg(cf), total(cf);
    for (size_t i = 0; i < t.emb->size(); i++) {
        const at::Tensor &A = t.anchor_logits[i];
        at::Tensor P = free_logits(t, *t.a->net, (*t.emb)[i]) > 0;
        at::Tensor conf_fg = A > c, conf_bg = A < -c;
        at::Tensor n_cf = conf_fg.flatten(1).sum(1), n_kept = (conf_fg & P).flatten(1).sum(1);
        at::Tensor n_flip = (conf_bg & P).flatten(1).sum(1), n_afg = (A > 0).flatten(1).sum(1);
        for (int64_t l = 0; l < t.n_labels; l++) {
            cf[(size_t)l] += (double)n_cf[l].item<int64_t>();
            kept[(size_t)l] += (double)n_kept[l].item<int64_t>();
            cb_fg[(size_t)l] += (double)n_flip[l].item<int64_t>();
            afg[(size_t)l] += (double)n_afg[l].item<int64_t>();
            total[(size_t)l] += (double)A[l].numel();
        }
    }
    Accept ac;
    for (int64_t l = 0; l < t.n_labels; l++) {
        const size_t k = (size_t)l;
        ac.agree.push_back(cf[k] > 0 ? kept[k] / cf[k] : 1.0);
        /* a label the anchor never finds: new foreground is measured against 0.1 % of the pixels */
        ac.flip.push_back(cb_fg[k] / std::max(afg[k], 1e-3 * total[k]));
    }
    ac.cons = consistency(t, *t.a->net);
    return ac;
}

/* Labels that break the acceptance rule, each with why ("" when it holds). */
std::vector<std::string> accept_failures(const Tta &t, const Accept &ac, const std::vector<double> &cons0)
{
    std::vector<std::string> why((size_t)t.n_labels);
    char b[200];
    for (size_t l = 0; l < why.size(); l++) {
        if (ac.agree[l] < t.p->min_confident_agreement)
            snprintf(b, sizeof b, "kept %.3f of the unadapted confident foreground (minimum %.3f)", ac.agree[l],
                     t.p->min_confident_agreement);
        else if (ac.flip[l] > t.p->max_confident_flip)
            snprintf(b, sizeof b, "turned confident background into foreground (%.3f of its area, limit %.3f)",
                     ac.flip[l], t.p->max_confident_flip);
        else if (ac.cons[l] < cons0[l] - t.p->max_consistency_drop)
            snprintf(b, sizeof b, "consistency under flip/intensity change fell from %.3f to %.3f", cons0[l], ac.cons[l]);
        else
            continue;
        why[l] = b;
    }
    return why;
}

/* Return label l's tokens (its input tokens and its token set in every block) to the anchor's. */
void rollback_label(Tta &t, int64_t l)
{
    at::NoGradGuard ng;
    AdapterNet &n = *t.a->net;
    if (n.input_tokens.defined() && t.anchor->input_tokens.defined())
        n.input_tokens[l].copy_(t.anchor->input_tokens[l]);
    for (size_t k = 0; k < n.block_tokens.size() && k < t.anchor->block_tokens.size(); k++)
        if (n.block_tokens[k].defined() && t.anchor->block_tokens[k].defined())
            n.block_tokens[k][l].copy_(t.anchor->block_tokens[k][l]);
}

/* Prompted decoding shares the bottlenecks: keep it where it was. Boxes around the anchor's
 * prompt-free masks (input frame), its box predictions as soft targets. Undefined when the anchor
 * finds nothing to box. */
at::Tensor tta_anchor_loss(const Tta &t, size_t i)
{
    const at::Tensor &e = (*t.emb)[i];
    PromptBatch pb;
    at::Tensor target;
    {
        at::NoGradGuard ng;
        auto f = adapter_forward_free(*t.sam, *t.anchor, t.a->dense_pe, e, t.all_labels);
        at::Tensor fg = (f.first.select(1, 0) > 0).to(at::kCPU);  // labels x L x L
        std::vector<float> bx;
        for (int64_t l = 0; l < t.n_labels; l++) {
            at::Tensor ys = fg[l].any(1).nonzero(), xs = fg[l].any(0).nonzero();
            if (ys.numel() == 0)
                continue;
            const double k = (double)t.S / t.L;
            bx.insert(bx.end(), {(float)(xs.min().item<int64_t>() * k), (float)(ys.min().item<int64_t>() * k),
                                 (float)((xs.max().item<int64_t>() + 1) * k),
                                 (float)((ys.max().item<int64_t>() + 1) * k)});
        }
        if (bx.empty())
            return at::Tensor();
        pb.boxes = at::tensor(bx).reshape({-1, 4}).to(t.dev);
        target = at::sigmoid(adapter_forward_prompted(*t.sam, t.anchor.get(), t.a->dense_pe, e, pb, t.n_labels).first);
    }
    auto sp = adapter_forward_prompted(*t.sam, t.a->net.get(), t.a->dense_pe, e, pb, t.n_labels);
    return at::binary_cross_entropy_with_logits(sp.first, target);
}

/* The loss of one step on image i: entropy, agreement with the teacher on the flipped image,
 * the prompt anchor. */
at::Tensor tta_loss(const Tta &t, size_t i)
{
    const samda_tta_params *p = t.p;
    auto s = adapter_forward_free(*t.sam, *t.a->net, t.a->dense_pe, (*t.emb)[i], t.all_labels);
    at::Tensor prob = at::sigmoid(s.first);
    at::Tensor ent = -(prob * at::log(prob.clamp_min(1e-6)) + (1 - prob) * at::log((1 - prob).clamp_min(1e-6))).mean();
    at::Tensor loss = p->entropy_weight * ent;
    if (!t.embf->empty() && (*t.embf)[i].defined()) {
        at::Tensor target;
        {
            at::NoGradGuard ng;
            auto r = adapter_forward_free(*t.sam, *t.teacher, t.a->dense_pe, (*t.embf)[i], t.all_labels);
            target = at::sigmoid(tta_unflip(t, r.first, (*t.content_w)[i]));
        }
        loss = loss + at::binary_cross_entropy_with_logits(s.first, target);
    }
    if (p->prompt_anchor_weight > 0) {
        at::Tensor al = tta_anchor_loss(t, i);
        if (al.defined())
            loss = loss + p->prompt_anchor_weight * al;
    }
    return loss;
}

/* samda_tta_report from a finished run: the guards' figures (worst label for agreement and flip, mean
 * consistency) of the last weights checked. */
void fill_report(samda_tta_report *rep, int steps_run, bool reverted, const std::string &reason, const TtaStats &start,
                 const TtaStats &last, int64_t n_labels, double seconds, const Accept &checked_ac,
                 const std::vector<double> &cons0, int n_rolled, const std::string &decision)
{
    std::memset(rep, 0, sizeof *rep);
    rep->steps_run = steps_run;
    rep->reverted = reverted ? 1 : 0;
    snprintf(rep->reason, sizeof rep->reason, "%s", reason.c_str());
    rep->iou_before = start.iou;
    rep->iou_after = last.iou;
    rep->area_ratio_min = 1e9, rep->area_ratio_max = 0;
    for (int64_t l = 0; l < n_labels; l++) {
        const double a0 = start.area[(size_t)l];
        const double r = a0 > 1e-4 ? last.area[(size_t)l] / a0 : 1.0;
        rep->area_ratio_min = std::min(rep->area_ratio_min, r);
        rep->area_ratio_max = std::max(rep->area_ratio_max, r);
    }
    rep->seconds = seconds;
    rep->confident_agreement = 1, rep->confident_flip = 0, rep->consistency_before = 0, rep->consistency_after = 0;
    for (int64_t l = 0; l < n_labels; l++) {
        rep->confident_agreement = std::min(rep->confident_agreement, checked_ac.agree[(size_t)l]);
        rep->confident_flip = std::max(rep->confident_flip, checked_ac.flip[(size_t)l]);
        rep->consistency_before += cons0[(size_t)l] / (double)n_labels;
        rep->consistency_after += checked_ac.cons[(size_t)l] / (double)n_labels;
    }
    rep->labels_rolled_back = n_rolled;
    snprintf(rep->decision, sizeof rep->decision, "%s", decision.c_str());
}

/* Test-time adaptation: steps on random images, the teacher following by EMA, the guards checked
 * every check_every steps; a failed check restores the last weights that passed and stops. */
samda_status tta_impl(const samda_model *m, samda_adapter *a, const std::vector<at::Tensor> &emb,
                      const std::vector<at::Tensor> &embf, const std::vector<int> &content_w,
                      const std::vector<at::Tensor> &embaug, const samda_tta_params *p, samda_tta_report *rep)
{
    check_tta_params(m, a, emb.size(), p);
    const auto t0 = Clock::now();
    const SamImpl &sam = model_network(m);
    const at::Device dev = model_device(m);
    Tta t{&sam, a, &emb, &embf, &content_w, &embaug, p, dev, sam.cfg.low_res_size(), sam.cfg.img_size,
          (int64_t)a->labels.size(), at::Tensor(), copy_adapter_net(*a->net, dev), copy_adapter_net(*a->net, dev),
          {}};
    const int64_t n_labels = t.n_labels;
    std::vector<at::Tensor> params, tparams;
    {
        std::map<std::string, at::Tensor> tn(t.teacher->named.begin(), t.teacher->named.end());
        for (auto &kv : a->net->named) {
            params.push_back(kv.second);
            tparams.push_back(tn.at(kv.first));
        }
    }
    for (auto &q : t.teacher->parameters(true))
        q.requires_grad_(false);
    for (auto &q : t.anchor->parameters(true))
        q.requires_grad_(false);
    t.all_labels = at::arange(n_labels, at::TensorOptions().dtype(at::kLong).device(dev));

    const TtaStats start = tta_stats(t);
    TtaStats last = start;
    for (size_t i = 0; i < emb.size(); i++)
        t.anchor_logits.push_back(free_logits(t, *t.anchor, emb[i]));
    const std::vector<double> cons0 = consistency(t, *t.anchor);
    /* the measures of the last weights checked, accepted or not (at the start: the anchor's own) */
    Accept checked_ac{std::vector<double>((size_t)n_labels, 1.0), std::vector<double>((size_t)n_labels, 0.0), cons0};
    std::string rolled;  // names of labels rolled back, and why
    int n_rolled = 0;
    std::vector<at::Tensor> good = snapshot(params);
    AdamW opt(params, p->lr, 0.0);
    Rng rng(p->seed);
    std::uniform_int_distribution<size_t> pick(0, emb.size() - 1);
    std::string reason;
    int steps_run = 0;
    const bool prog = show_progress(p->progress);
    bool reverted = false;
    for (int step = 1; step <= p->steps; step++) {
        const size_t i = pick(rng);
        opt.zero_grad();
        at::Tensor loss = tta_loss(t, i);
        loss.backward();
        {
            // The prompted token set is the anchor's to keep, not TTA's to adapt: Adam would turn its
            // near-zero gradients into full-size steps.
            at::NoGradGuard ng;
            for (auto &bt : a->net->block_tokens)
                if (bt.grad().defined())
                    bt.mutable_grad()[n_labels].zero_();
        }
        opt.step();
        {
            at::NoGradGuard ng;
            for (size_t k = 0; k < params.size(); k++)
                tparams[k].mul_(p->ema).add_(params[k].detach(), 1 - p->ema);
        }
        steps_run = step;
        if (prog)
            fprintf(stderr, "\rtta: step %d/%d loss %.4f   ", step, p->steps, loss.item<double>());
        if (step % p->check_every == 0 || step == p->steps) {
            TtaStats st = tta_stats(t);
            reason = tta_guard(t, start, st);
            Accept ac;
            if (reason.empty()) {
                ac = measure_accept(t);
                checked_ac = ac;
                std::vector<std::string> why = accept_failures(t, ac, cons0);
                size_t n_bad = 0;
                for (const auto &w : why)
                    n_bad += !w.empty();
                if (n_bad > 0 && n_bad < why.size()) {
                    /* Some labels alone break the rule: return their tokens to the anchor's and check
                     * again (the shared bottlenecks still move them, so all labels are re-checked). */
                    for (int64_t l = 0; l < n_labels; l++)
                        if (!why[(size_t)l].empty()) {
                            rollback_label(t, l);
                            n_rolled++;
                            rolled += (rolled.empty() ? "" : "; ") + std::string(a->labels[(size_t)l].name) + " (" +
                                      why[(size_t)l] + ")";
                        }
                    st = tta_stats(t);
                    reason = tta_guard(t, start, st);
                    if (reason.empty()) {
                        ac = measure_accept(t);
                        checked_ac = ac;
                        why = accept_failures(t, ac, cons0);
                    }
                }
                for (int64_t l = 0; l < n_labels && reason.empty(); l++)
                    if (!why[(size_t)l].empty())
                        reason = std::string("label \"") + a->labels[(size_t)l].name + "\" " + why[(size_t)l];
            }
            if (!reason.empty()) {
                restore(params, good);
                reverted = true;
                rolled.clear();
                n_rolled = 0;
                break;
            }
            last = st;
            good = snapshot(params);
            if (!rolled.empty())
                break;  // further steps would move the rolled-back labels again
        }
    }
    if (prog)
        fprintf(stderr, "\n");
    if (reverted) {
        fprintf(stderr, "tta: reverted to the last weights that passed the guards: %s\n", reason.c_str());
    } else if (steps_run > 0) {
        if (!a->version.empty())
            a->parent = a->version;
        a->version.clear();
    }
    const std::string decision = reverted ? "rejected: " + reason
                                 : rolled.empty() ? std::string("accepted")
                                                  : "accepted; rolled back label(s) " + rolled;
    if (!reverted && !rolled.empty())
        fprintf(stderr, "tta: %s\n", decision.c_str());
    a->meta["provenance"] = "{\"kind\":\"test-time\",\"images\":" + std::to_string(emb.size()) +
                            ",\"steps\":" + std::to_string(steps_run) + ",\"seed\":" + std::to_string(p->seed) +
                            ",\"lr\":" + json_num(p->lr) + ",\"reverted\":" + (reverted ? "true" : "false") +
                            ",\"metrics\":{\"iou_before\":" + json_num(start.iou) + ",\"iou_after\":" +
                            json_num(last.iou) + "},\"decision\":" + safetensors::json_quote(decision) + "}";
    if (rep)
        fill_report(rep, steps_run, reverted, reason, start, last, n_labels, since(t0), checked_ac, cons0, n_rolled,
                    decision);
    return SAMDA_OK;
}

}  // namespace

extern "C" {

void samda_tta_params_init(samda_tta_params *p)
{
    if (!p)
        return;
    std::memset(p, 0, sizeof *p);
    p->steps = 10; /* fewer steps: 30 over-sharpened on phantom site B (docs/adaptation.md) */
    p->lr = 5e-4;
    p->ema = 0.95;
    p->entropy_weight = 0.5;
    p->max_iou_drop = 0.05;
    p->min_area_ratio = 0.5;
    p->max_area_ratio = 2.0;
    p->check_every = 10;
    p->prompt_anchor_weight = 0.3; /* docs/adaptation.md: 1 cost prompt-free Dice on site B, 0 box Dice on D */
    p->confident_logit = 2.2;      /* probability 0.9 */
    /* docs/adaptation.md, "Safe adaptation": 0.95 / 0.05 / 0.01 rejected every run on phantom sites
     * B, E and F, where the unconstrained run moved Dice by less than 0.3 points either way */
    p->min_confident_agreement = 0.9;
    p->max_confident_flip = 0.1;
    p->max_consistency_drop = 0.02;
    p->seed = 1;
    p->progress = -1;
}

samda_status samda_adapter_tta(const samda_model *m, samda_adapter *a, samda_embedding *const *emb,
                               samda_embedding *const *emb_flipped, size_t n, const samda_tta_params *p,
                               samda_tta_report *report, samda_error *err)
{
    return guard_status("test-time adaptation", err, [&]() {
        if (!emb || n == 0)
            raise(SAMDA_EINVAL, "no embeddings");
        std::vector<at::Tensor> e, ef;
        std::vector<int> cw;
        for (size_t i = 0; i < n; i++) {
            if (!emb[i] || emb[i]->fingerprint != samda_model_fingerprint(m))
                raise(SAMDA_EINVAL, "embedding " + std::to_string(i) + " is NULL or from another model");
            e.push_back(emb[i]->data);
            cw.push_back(emb[i]->input_w);
            if (emb_flipped) {
                if (!emb_flipped[i] || emb_flipped[i]->fingerprint != emb[i]->fingerprint)
                    raise(SAMDA_EINVAL, "flipped embedding " + std::to_string(i) + " is NULL or from another model");
                ef.push_back(emb_flipped[i]->data);
            }
        }
        return tta_impl(m, a, e, ef, cw, std::vector<at::Tensor>(), p, report);
    });
}

samda_status samda_adapter_tta_dir(const samda_model *m, samda_adapter *a, const char *data_dir, int max_cases,
                                   const samda_tta_params *p, samda_tta_report *report, samda_error *err)
{
    return guard_status("test-time adaptation", err, [&]() {
        if (!m || !a || !data_dir)
            raise(SAMDA_EINVAL, "model, adapter or data_dir is NULL");
        std::vector<Case> cases = load_cases(data_dir, false, max_cases, p ? p->seed : 1);
        // One window per image (the first label's); labels sharing it reuse the embedding.
        std::vector<samda_adapter_label> one(1, a->labels[0]);
        Encoded enc = encode_cases(m, cases, one, true, false);
        /* The intensity-changed view for the acceptance rule: values scaled by 1.05, shifted by 2 %
         * of the image's spread and given noise of 3 % of it (seeded), so that it changes the input
         * under any window, CT or MR percentiles. */
        std::vector<Case> aug = cases;
        Rng rng(p ? p->seed : 1, 0xa06);
        std::normal_distribution<float> nd(0.f, 1.f);
        for (auto &c : aug) {
            const float sd = c.image.std().item<float>();
            at::Tensor noise = at::empty_like(c.image);
            float *q = noise.data_ptr<float>();
            for (int64_t k = 0; k < noise.numel(); k++)
                q[k] = nd(rng);
            c.image = c.image * 1.05f + 0.02f * sd + noise * (0.03f * sd);
        }
        Encoded enc_aug = encode_cases(m, aug, one, false, false);
        std::vector<at::Tensor> e, ef, ea;
        std::vector<int> cw;
        for (size_t c = 0; c < cases.size(); c++) {
            e.push_back(enc.get(c, 0, 0));
            ef.push_back(enc.get(c, 0, 1));
            ea.push_back(enc_aug.get(c, 0, 0));
            cw.push_back(enc.iw[c]);
        }
        return tta_impl(m, a, e, ef, cw, ea, p, report);
    });
}

}  // extern "C"
