/* `samda model info | segment | bench model`: the model from the command line: describe a checkpoint,
 * segment one image with prompts, measure the encoder and decoder. Output is JSON on stdout (for
 * scripts); messages go to stderr. The adapter commands are cli_adapter.c's. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "image_io.h"
#include "model.h"

#define MODEL_JSON_FLAGS JSON_INDENT(2) /* keys in the order written, unlike the store commands */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct model_opts {
    samda_model_params p;
    const char *arch_s, *device_s, *dtype_s;
} model_opts;

/* Options shared by every model command; returns 1 if argv[*i] was one (consuming its value). */
static int model_opt(model_opts *o, int argc, char **argv, int *i, int *bad)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
#define TAKE(name) (!strcmp(a, name) && (v || (fprintf(stderr, "samda: %s needs a value\n", name), (*bad = 1), 0)))
    if (TAKE("--checkpoint")) o->p.checkpoint_path = v;
    else if (TAKE("--config")) o->p.config_path = v;
    else if (TAKE("--arch")) o->p.arch = v;
    else if (TAKE("--device")) o->device_s = v;
    else if (TAKE("--dtype")) o->dtype_s = v;
    else if (TAKE("--threads")) o->p.n_threads = atoi(v);
    else if (TAKE("--batch")) o->p.max_batch = atoi(v);
    else if (!strcmp(a, "--random-weights")) {
        o->p.random_weights = 1;
        return 1;
    } else if (!strcmp(a, "--medsam")) {
        o->p.convention = SAMDA_MODEL_CONVENTION_MEDSAM;
        return 1;
    } else return 0;
#undef TAKE
    if (*bad) return 1;
    (*i)++;
    return 1;
}

static samda_model *open_model(model_opts *o)
{
    if (o->device_s) {
        if (!strcmp(o->device_s, "cpu")) o->p.device = SAMDA_MODEL_DEVICE_CPU;
        else if (!strcmp(o->device_s, "auto")) o->p.device = SAMDA_MODEL_DEVICE_AUTO;
        else if (!strcmp(o->device_s, "cuda")) o->p.device = 0;
        else if (!strncmp(o->device_s, "cuda:", 5)) o->p.device = atoi(o->device_s + 5);
        else {
            fprintf(stderr, "samda: --device %s: must be cpu, cuda, cuda:N or auto\n", o->device_s);
            return NULL;
        }
    }
    if (o->dtype_s) {
        if (!strcmp(o->dtype_s, "float32")) o->p.encoder_dtype = SAMDA_MODEL_DTYPE_FLOAT32;
        else if (!strcmp(o->dtype_s, "float16")) o->p.encoder_dtype = SAMDA_MODEL_DTYPE_FLOAT16;
        else if (!strcmp(o->dtype_s, "bfloat16")) o->p.encoder_dtype = SAMDA_MODEL_DTYPE_BFLOAT16;
        else {
            fprintf(stderr, "samda: --dtype %s: must be float32, float16 or bfloat16\n", o->dtype_s);
            return NULL;
        }
    }
    if (!o->p.checkpoint_path && !o->p.random_weights) {
        fprintf(stderr, "samda: --checkpoint FILE is required (or --random-weights --arch vit_b)\n");
        return NULL;
    }
    samda_error err;
    samda_model *m = samda_model_open(&o->p, &err);
    if (!m) fprintf(stderr, "samda: %s\n", err.message);
    return m;
}

static json_t *info_json(const samda_model *m)
{
    samda_model_info in;
    samda_model_get_info(m, &in, NULL);
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:{s:I, s:I, s:I, s:I}, s:s, s:s, s:s, s:s, s:i, s:i, s:s}", "arch",
                     in.arch, "img_size", in.img_size, "embed_dim", in.embed_dim, "depth", in.depth, "num_heads",
                     in.num_heads, "parameters", "image_encoder", (json_int_t)in.n_params_image_encoder,
                     "prompt_encoder", (json_int_t)in.n_params_prompt_encoder, "mask_decoder",
                     (json_int_t)in.n_params_mask_decoder, "total", (json_int_t)in.n_params_total, "fingerprint",
                     in.fingerprint, "device", in.device, "blas", in.blas, "blas_path", in.blas_path, "threads",
                     in.n_threads, "max_batch", in.max_batch, "convention",
                     in.convention == SAMDA_MODEL_CONVENTION_MEDSAM ? "medsam" : "sam");
}

int cli_cmd_model(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "info") != 0) {
        fprintf(stderr, "usage: samda model info --checkpoint F [--config J] [--arch A] [--device D] [--threads T]\n");
        return CLI_EXIT_USAGE;
    }
    model_opts o = {0};
    samda_model_params_init(&o.p);
    int bad = 0;
    for (int i = 2; i < argc; i++)
        if (!model_opt(&o, argc, argv, &i, &bad) || bad) {
            if (!bad) fprintf(stderr, "samda model info: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    samda_model *m = open_model(&o);
    if (!m) return CLI_EXIT_FAIL;
    int rc = cli_print_json(info_json(m), MODEL_JSON_FLAGS);
    samda_model_close(m);
    return rc;
}

static int parse_floats(const char *s, float *out, int n)
{
    char *end;
    for (int i = 0; i < n; i++) {
        errno = 0;
        out[i] = strtof(s, &end);
        if (end == s || errno) return 0;
        s = end;
        if (i + 1 < n) {
            if (*s != ',') return 0;
            s++;
        }
    }
    return *s == 0;
}

int cli_cmd_segment(int argc, char **argv)
{
    model_opts o = {0};
    samda_model_params_init(&o.p);
    const char *image = NULL, *outp = NULL;
    float points[2 * 64], box[4];
    int labels[64], n_points = 0, has_box = 0, multimask = 0, bad = 0;
    double wc = 0, ww = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (model_opt(&o, argc, argv, &i, &bad)) {
            if (bad) return CLI_EXIT_USAGE;
        } else if (!strcmp(a, "--image") && v) {
            image = v;
            i++;
        } else if (!strcmp(a, "--out") && v) {
            outp = v;
            i++;
        } else if (!strcmp(a, "--point") && v) {
            float t[3];
            if (n_points >= 64 || !parse_floats(v, t, 3) || (t[2] != 0 && t[2] != 1)) {
                fprintf(stderr, "samda segment: --point %s: expected x,y,label with label 1 (in) or 0 (out), "
                                "at most 64 points\n", v);
                return CLI_EXIT_USAGE;
            }
            points[2 * n_points] = t[0];
            points[2 * n_points + 1] = t[1];
            labels[n_points++] = (int)t[2];
            i++;
        } else if (!strcmp(a, "--box") && v) {
            if (!parse_floats(v, box, 4) || box[2] <= box[0] || box[3] <= box[1]) {
                fprintf(stderr, "samda segment: --box %s: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0\n", v);
                return CLI_EXIT_USAGE;
            }
            has_box = 1;
            i++;
        } else if (!strcmp(a, "--window") && v) {
            float t[2];
            if (!parse_floats(v, t, 2) || t[1] <= 0) {
                fprintf(stderr, "samda segment: --window %s: expected center,width with width > 0\n", v);
                return CLI_EXIT_USAGE;
            }
            wc = t[0];
            ww = t[1];
            i++;
        } else if (!strcmp(a, "--multimask")) {
            multimask = 1;
        } else {
            fprintf(stderr, "usage: samda segment --checkpoint F [--config J] --image X.(npy|png|dcm) "
                            "[--point x,y,label]... [--box x0,y0,x1,y1] [--window c,w] [--multimask] "
                            "--out mask.(png|npy)\n");
            return CLI_EXIT_USAGE;
        }
    }
    if (!image || !outp || (!n_points && !has_box)) {
        fprintf(stderr, "samda segment: --image, --out and at least one --point or --box are required\n");
        return CLI_EXIT_USAGE;
    }
    samda_error err;
    samdad_image img;
    if (samdad_image_read(image, wc, ww, &img, &err) != SAMDA_OK) {
        fprintf(stderr, "samda segment: %s\n", err.message);
        return CLI_EXIT_FAIL;
    }
    samda_model *m = open_model(&o);
    if (!m) {
        free(img.pixels);
        return CLI_EXIT_FAIL;
    }
    int rc = CLI_EXIT_FAIL;
    samda_model_info in;
    samda_model_get_info(m, &in, NULL);
    samda_model_image mi = {img.pixels, img.height, img.width, img.channels, SAMDA_MODEL_PIXEL_F32};
    samda_model_encode_item item = {.image = &mi};
    samda_embedding *e = NULL;
    double t0 = now_s();
    if (samda_model_encode(m, &item, 1, &e, &err) != SAMDA_OK) {
        fprintf(stderr, "samda segment: encoding %s: %s\n", image, err.message);
        goto done;
    }
    double t1 = now_s();
    samda_model_prompt pr = {n_points ? points : NULL, n_points ? labels : NULL, (size_t)n_points,
                             has_box ? box : NULL, NULL};
    int c = multimask ? in.n_multimask : 1;
    size_t plane = (size_t)img.height * img.width;
    float iou[8];
    uint8_t *masks = malloc((size_t)c * plane);
    samda_model_decode_out out = {.iou = iou, .iou_len = 8, .masks = masks, .masks_len = (size_t)c * plane};
    if (!masks || samda_model_decode(m, e, &pr, 1, multimask ? SAMDA_MODEL_DECODE_MULTIMASK : 0, &out, &err) !=
                      SAMDA_OK) {
        fprintf(stderr, "samda segment: decoding: %s\n", masks ? err.message : "out of memory");
        free(masks);
        goto done;
    }
    double t2 = now_s();
    int best = 0;
    for (int k = 1; k < c; k++)
        if (iou[k] > iou[best]) best = k;
    if (samdad_mask_write(outp, masks + (size_t)best * plane, img.height, img.width, &err) != SAMDA_OK) {
        fprintf(stderr, "samda segment: %s\n", err.message);
        free(masks);
        goto done;
    }
    size_t area = 0;
    for (size_t p = 0; p < plane; p++) area += masks[(size_t)best * plane + p] != 0;
    json_t *ious = json_array();
    for (int k = 0; k < c; k++) json_array_append_new(ious, json_real(iou[k]));
    cli_print_json(json_pack("{s:s, s:o, s:i, s:I, s:f, s:f}", "out", outp, "iou", ious, "chosen", best, "area_pixels",
                         (json_int_t)area, "encode_s", t1 - t0, "decode_s", t2 - t1), MODEL_JSON_FLAGS);
    free(masks);
    rc = CLI_EXIT_OK;
done:
    samda_embedding_release(e);
    samda_model_close(m);
    free(img.pixels);
    return rc;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* samda bench model: encoder images/s at a batch size, decoder ms per prompt for 1 and 16 prompts
 * per call against one cached embedding, peak memory. Prints, never judges. */
int cli_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "model") != 0) {
        fprintf(stderr, "usage: samda bench model (--checkpoint F | --arch vit_b --random-weights) [--batch N] "
                        "[--threads T] [--device cpu|cuda] [--dtype float32|bfloat16] [--iters K]\n");
        return CLI_EXIT_USAGE;
    }
    model_opts o = {0};
    samda_model_params_init(&o.p);
    int iters = 1, bad = 0, batch = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            iters = atoi(argv[++i]);
            if (iters < 1 || iters > 1000) {
                fprintf(stderr, "samda bench model: --iters must be 1..1000\n");
                return CLI_EXIT_USAGE;
            }
        } else if (!model_opt(&o, argc, argv, &i, &bad) || bad) {
            if (!bad) fprintf(stderr, "samda bench model: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (o.p.max_batch > 0) batch = o.p.max_batch;
    if (batch > 256) batch = 256;
    samda_model *m = open_model(&o);
    if (!m) return CLI_EXIT_FAIL;
    samda_model_info in;
    samda_model_get_info(m, &in, NULL);
    samda_error err;
    int rc = CLI_EXIT_FAIL;
    /* A synthetic grey image with structure (a bright disc), the size of the encoder input. */
    int S = in.img_size;
    float *px = malloc((size_t)S * S * sizeof(float));
    samda_model_image *imgs = calloc((size_t)batch, sizeof *imgs);
    samda_model_encode_item *items = calloc((size_t)batch, sizeof *items);
    samda_embedding **emb = calloc((size_t)batch, sizeof *emb);
    if (!px || !imgs || !items || !emb) goto done;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            px[(size_t)y * S + x] = ((x - S / 2) * (x - S / 2) + (y - S / 2) * (y - S / 2) < S * S / 16) ? 200.f : 40.f;
    for (int b = 0; b < batch; b++) {
        imgs[b] = (samda_model_image){px, S, S, 1, SAMDA_MODEL_PIXEL_F32};
        items[b].image = &imgs[b];
    }
    double enc = 0;
    for (int it = 0; it < iters; it++) {
        double t0 = now_s();
        if (samda_model_encode(m, items, (size_t)batch, emb, &err) != SAMDA_OK) {
            fprintf(stderr, "samda bench model: encode: %s\n", err.message);
            goto done;
        }
        enc += now_s() - t0;
        if (it + 1 < iters)
            for (int b = 0; b < batch; b++) samda_embedding_release(emb[b]), emb[b] = NULL;
    }
    /* Decoder: 1 prompt per call, then 16 prompts in one call, on the first embedding. */
    enum { NP = 16 };
    float boxes[NP][4];
    samda_model_prompt prompts[NP];
    for (int k = 0; k < NP; k++) {
        float c = (float)S / 2, r = (float)S / 8 + (float)k;
        boxes[k][0] = c - r;
        boxes[k][1] = c - r;
        boxes[k][2] = c + r;
        boxes[k][3] = c + r;
        prompts[k] = (samda_model_prompt){NULL, NULL, 0, boxes[k], NULL};
    }
    float iou[NP];
    samda_model_decode_out out = {.iou = iou, .iou_len = NP};
    int reps = 10;
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        if (samda_model_decode(m, emb[0], prompts, 1, 0, &out, &err) != SAMDA_OK) {
            fprintf(stderr, "samda bench model: decode: %s\n", err.message);
            goto done;
        }
    double dec1 = (now_s() - t0) / reps;
    t0 = now_s();
    for (int r = 0; r < reps; r++)
        if (samda_model_decode(m, emb[0], prompts, NP, 0, &out, &err) != SAMDA_OK) {
            fprintf(stderr, "samda bench model: decode: %s\n", err.message);
            goto done;
        }
    double dec16 = (now_s() - t0) / reps;
    json_t *j = json_pack("{s:o, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:I}", "model", info_json(m), "batch", batch,
                          "iters", iters, "encoder_images_per_s", batch * iters / enc, "encoder_s_per_image",
                          enc / (batch * iters), "decoder_ms_per_prompt_single", dec1 * 1e3,
                          "decoder_ms_per_call_16_prompts", dec16 * 1e3, "decoder_ms_per_prompt_batched_16",
                          dec16 * 1e3 / NP, "peak_rss_kib", (json_int_t)peak_rss_kib());
    size_t used = 0, total = 0;
    if (samda_model_get_device_memory(m, &used, &total, NULL) == SAMDA_OK) {
        json_object_set_new(j, "device_memory_used_bytes", json_integer((json_int_t)used));
        json_object_set_new(j, "device_memory_total_bytes", json_integer((json_int_t)total));
    }
    rc = cli_print_json(j, MODEL_JSON_FLAGS);
done:
    for (int b = 0; emb && b < batch; b++) samda_embedding_release(emb[b]);
    free(emb);
    free(items);
    free(imgs);
    free(px);
    samda_model_close(m);
    return rc;
}
