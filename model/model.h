/* model/model.h: Segment Anything (SAM, MedSAM) in libtorch, behind a C interface.
 *
 * A samda_model holds one SAM network (image encoder, prompt encoder, mask decoder) loaded from an
 * official checkpoint (or seeded random weights for benchmarks). Images are encoded once into a
 * samda_embedding; any number of prompts (points, a box, a previous low-resolution mask) are then
 * decoded against that embedding in one call. A samda_embedding_cache keeps embeddings in an LRU
 * bounded in bytes.
 *
 * Conventions
 *  - Coordinates are (x, y) in pixels of the ORIGINAL image; the model scales them.
 *  - Images are row-major H x W x C (C = 1 or 3), uint8 0..255 or float already windowed to 0..255.
 *  - Every function that can fail returns a samda_status and fills *err (err may be NULL); no C++
 *    exception crosses this interface.
 *
 * Thread-safety: a samda_model is read-only after samda_model_open(): samda_model_encode(),
 * samda_model_decode(), samda_model_preprocess() and the getters may run concurrently on one model.
 * samda_model_open() sets libtorch's process-wide intra-op thread count (the last open wins).
 * Embeddings are immutable and reference counted (retain/release are thread-safe). The cache is
 * thread-safe. Everything else: one thread per object. */
#ifndef SAMDA_MODEL_H
#define SAMDA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct samda_model samda_model;                     /* opaque; model/model.cpp */
typedef struct samda_embedding samda_embedding;             /* opaque, reference counted */
typedef struct samda_embedding_cache samda_embedding_cache; /* opaque; model/cache.cpp */

#define SAMDA_MODEL_DEVICE_AUTO (-2) /* CUDA device 0 when libtorch sees a GPU, else the CPU */
#define SAMDA_MODEL_DEVICE_CPU  (-1)

typedef enum samda_model_dtype {
    SAMDA_MODEL_DTYPE_FLOAT32 = 0,
    SAMDA_MODEL_DTYPE_FLOAT16 = 1, /* CUDA only */
    SAMDA_MODEL_DTYPE_BFLOAT16 = 2 /* CUDA only */
} samda_model_dtype;

typedef enum samda_model_convention {
    SAMDA_MODEL_CONVENTION_SAM = 0,   /* longest side to S (bilinear, antialiased), ImageNet mean/std, zero pad
                                         bottom/right */
    SAMDA_MODEL_CONVENTION_MEDSAM = 1 /* resize to S x S (bicubic, antialiased), min-max scale to [0, 1] */
} samda_model_convention;

typedef struct samda_model_params {
    const char *checkpoint_path;       /* .pth state dict (torch.save); ignored with random_weights */
    const char *arch;                  /* "auto" (default: inferred from the checkpoint's tensor shapes),
                                          "vit_b", "vit_l", "vit_h", or "custom" (needs config_path) */
    const char *config_path;           /* JSON config (layout of fixtures/sam-parity/tiny/config.json); required
                                          for "custom", and used by "auto" when given; NULL otherwise */
    int device;                        /* SAMDA_MODEL_DEVICE_AUTO (default), SAMDA_MODEL_DEVICE_CPU, or a CUDA
                                          ordinal >= 0 */
    int n_threads;                     /* intra-op CPU threads; 0 (default) = number of online CPUs */
    samda_model_dtype encoder_dtype;   /* image encoder precision; FLOAT32 (default); half types on CUDA only */
    int max_batch;                     /* images per encoder forward; 0 (default) = from free memory on CUDA,
                                          2 on the CPU */
    samda_model_convention convention; /* input convention (default SAM) */
    int random_weights;                /* non-zero: no checkpoint, deterministic random weights (default 0) */
    uint64_t seed;                     /* seed of random_weights (default 1) */
    int allow_tf32;                    /* CUDA float32: allow TF32 matmul and convolution (faster, about 1e-3
                                          relative error); default 0 = exact float32. libtorch keeps this
                                          setting process-wide: the last CUDA model opened decides */
} samda_model_params;

/** Fill *p with the defaults documented in samda_model_params. The only correct way to start.
 *  @param p OUT: parameters to initialise (NULL: no-op). */
void samda_model_params_init(samda_model_params *p);

/** Load a SAM network.
 *  @param p   IN: parameters from samda_model_params_init(), then adjusted.
 *  @param err OUT: reason on failure (may be NULL).
 *  @return the model, or NULL with err set: SAMDA_EINVAL (bad parameter, unknown arch, no CUDA device for a
 *          CUDA request), SAMDA_ENOENT (checkpoint or config file missing), SAMDA_ENOTSUP (half precision
 *          on the CPU), SAMDA_EMODEL (unreadable checkpoint; missing, unexpected or mis-shaped key, named in
 *          the message), SAMDA_ENOMEM.
 *  Ownership: caller owns the model; release with samda_model_close(). Strings in p are copied.
 *  Thread-safety: may run concurrently with other opens (but sets the process-wide thread count). */
samda_model *samda_model_open(const samda_model_params *p, samda_error *err);

/** Release a model. Embeddings made by it stay valid (they own their tensors). NULL is a no-op. */
void samda_model_close(samda_model *m);

typedef struct samda_model_info {
    char arch[16];               /* "vit_b", "vit_l", "vit_h" or "custom" */
    int img_size;                /* encoder input side S (1024 for official SAM) */
    int embed_dim, depth, num_heads; /* image encoder ViT sizes */
    int embedding_channels;      /* 256 */
    int embedding_size;          /* S / 16 (64) */
    int low_res_size;            /* 4 * embedding_size (256): side of low-res logits and mask inputs */
    int n_multimask;             /* masks per prompt with SAMDA_MODEL_DECODE_MULTIMASK (3) */
    int64_t n_params_image_encoder, n_params_prompt_encoder, n_params_mask_decoder, n_params_total;
    char fingerprint[65];        /* SHA-256 (hex) of the sorted tensor names, dtypes, shapes and bytes */
    char device[64];             /* "cpu" or "cuda:N" */
    int is_cuda;
    char blas[32];               /* "openblas", "reference", "mkl", "blis", ... or "unknown" */
    char blas_path[256];         /* real path of the BLAS library in use ("" when built in) */
    int n_threads;               /* intra-op threads in use */
    int max_batch;               /* images per encoder forward */
    samda_model_dtype encoder_dtype;
    samda_model_convention convention;
} samda_model_info;

/** Describe a loaded model.
 *  @param m IN. @param out OUT: filled on success.
 *  @return SAMDA_OK; SAMDA_EINVAL when m or out is NULL.  Thread-safety: safe. */
samda_status samda_model_get_info(const samda_model *m, samda_model_info *out, samda_error *err);

/** The model's fingerprint (64 hex characters). Ownership: borrowed, valid until samda_model_close(m). */
const char *samda_model_fingerprint(const samda_model *m);

/** Memory in use on the model's CUDA device (whole device, all processes: total minus free, as the CUDA
 *  runtime reports it; libtorch's caching allocator keeps what it reserved, so after work this is close
 *  to the peak reserved).
 *  @param used_bytes, total_bytes OUT.
 *  @return SAMDA_OK; SAMDA_ENOTSUP on the CPU or when the CUDA runtime cannot be queried; SAMDA_EINVAL. */
samda_status samda_model_get_device_memory(const samda_model *m, size_t *used_bytes, size_t *total_bytes,
                                           samda_error *err);

typedef enum samda_model_pixel_type {
    SAMDA_MODEL_PIXEL_U8 = 0, /* uint8 0..255 */
    SAMDA_MODEL_PIXEL_F32 = 1 /* float, already windowed to 0..255 (medical images) */
} samda_model_pixel_type;

typedef struct samda_model_image {
    const void *pixels;          /* row-major H x W x C, tightly packed; borrowed for the call */
    int height, width;           /* 1 .. 16384 each */
    int channels;                /* 1 (grey, repeated to RGB) or 3 (RGB) */
    samda_model_pixel_type type;
} samda_model_image;

/** Turn an image into the encoder input (the model's convention).
 *  @param img     IN: the image.
 *  @param out     OUT: 3 x S x S floats (S = info.img_size).  @param out_len IN: capacity in floats.
 *  @param input_h, input_w OUT: size of the resized image inside the S x S input (may be NULL).
 *  @return SAMDA_OK; SAMDA_EINVAL (bad image, out_len < 3*S*S), SAMDA_EMODEL, SAMDA_ENOMEM.
 *  Thread-safety: safe. */
samda_status samda_model_preprocess(const samda_model *m, const samda_model_image *img, float *out, size_t out_len,
                                    int *input_h, int *input_w, samda_error *err);

/** One image for samda_model_encode(): either a raw image or an already preprocessed input. */
typedef struct samda_model_encode_item {
    const samda_model_image *image;   /* raw image; NULL when preprocessed is given */
    const float *preprocessed;        /* 3 x S x S from samda_model_preprocess(); NULL when image is given */
    int original_height, original_width; /* with preprocessed: the image's size before preprocessing */
    int input_height, input_width;    /* with preprocessed: the content size inside S x S */
} samda_model_encode_item;

/** Encode n images (batched by max_batch, in inference mode).
 *  @param items IN: n items. @param out OUT: n embedding handles (all NULL on failure).
 *  @return SAMDA_OK; SAMDA_EINVAL (bad item, n = 0); SAMDA_ENOMEM (host or device memory); SAMDA_EMODEL.
 *  Ownership: caller owns each out[i]; release with samda_embedding_release().
 *  Thread-safety: safe (concurrent encodes share the device). */
samda_status samda_model_encode(const samda_model *m, const samda_model_encode_item *items, size_t n,
                                samda_embedding **out, samda_error *err);

/** Wrap an embedding computed elsewhere (e.g. the reference implementation) for decoding with m.
 *  @param data IN: C x h x w floats (C = embedding_channels, h = w = embedding_size); len = C*h*w.
 *  @param original_h/w IN: the image's size; input_h/w IN: content size inside S x S.
 *  @return a new embedding (caller releases) or NULL with err (SAMDA_EINVAL, SAMDA_ENOMEM). */
samda_embedding *samda_model_embedding_from_data(const samda_model *m, const float *data, size_t len,
                                                 int original_h, int original_w, int input_h, int input_w,
                                                 samda_error *err);

typedef struct samda_embedding_info {
    int channels, height, width;         /* 256 x 64 x 64 for official SAM */
    int original_height, original_width; /* the image's size */
    int input_height, input_width;       /* content size inside the S x S input */
    int img_size;                        /* S */
    size_t bytes;                        /* memory held (on the model's device) */
    samda_model_convention convention;
    char fingerprint[65];                /* fingerprint of the model that made it */
} samda_embedding_info;

/** Describe an embedding. @return SAMDA_OK; SAMDA_EINVAL when e or out is NULL. */
samda_status samda_embedding_get_info(const samda_embedding *e, samda_embedding_info *out);
/** Copy the embedding to host memory as C x h x w floats. @return SAMDA_OK; SAMDA_EINVAL (out_len too small). */
samda_status samda_embedding_copy_data(const samda_embedding *e, float *out, size_t out_len, samda_error *err);
/** Take another reference. @return e. Thread-safety: safe. */
samda_embedding *samda_embedding_retain(samda_embedding *e);
/** Drop a reference; the last one frees the embedding. NULL is a no-op. Thread-safety: safe. */
void samda_embedding_release(samda_embedding *e);

/** One prompt. Points and box are in original-image pixels. */
typedef struct samda_model_prompt {
    const float *points;       /* n_points x 2 (x, y); NULL when n_points = 0 */
    const int *point_labels;   /* n_points labels: 1 foreground, 0 background, -1 padding (ignored point) */
    size_t n_points;           /* 0 .. 256 */
    const float *box;          /* x0, y0, x1, y1, or NULL */
    const float *mask_input;   /* previous low-res logits, low_res_size x low_res_size, or NULL */
} samda_model_prompt;

#define SAMDA_MODEL_DECODE_MULTIMASK 1u /* n_multimask masks per prompt instead of one */

/** Output buffers of samda_model_decode(); any may be NULL (not computed). With n prompts, C masks per prompt
 *  (1, or n_multimask with SAMDA_MODEL_DECODE_MULTIMASK), L = low_res_size, H x W = original image size: */
typedef struct samda_model_decode_out {
    float *low_res_logits; size_t low_res_len;     /* n x C x L x L */
    float *iou;            size_t iou_len;         /* n x C predicted IoU */
    float *mask_logits;    size_t mask_logits_len; /* n x C x H x W logits at the original size */
    uint8_t *masks;        size_t masks_len;       /* n x C x H x W, 1 where the logit > 0 */
} samda_model_decode_out;

/** Decode n prompts against one embedding, batched in one call (prompts of the same shape run together).
 *  @param e IN: from samda_model_encode() or _embedding_from_data() with a model of the same fingerprint.
 *  @param prompts IN: n_prompts prompts (n_prompts >= 1). @param flags IN: SAMDA_MODEL_DECODE_*.
 *  @param out INOUT: buffers and their capacities in elements.
 *  @return SAMDA_OK; SAMDA_EINVAL (bad prompt, a buffer too small, embedding of another model);
 *          SAMDA_ENOMEM; SAMDA_EMODEL. Buffers are unspecified after a failure.
 *  Ownership: inputs borrowed for the call.  Thread-safety: safe. */
samda_status samda_model_decode(const samda_model *m, const samda_embedding *e, const samda_model_prompt *prompts,
                                size_t n_prompts, unsigned flags, samda_model_decode_out *out, samda_error *err);

/* ---- Embedding cache ------------------------------------------------------------------------- */

typedef struct samda_embedding_cache_stats {
    uint64_t hits, misses, insertions, evictions;
    size_t entries, bytes, max_bytes;
} samda_embedding_cache_stats;

/** New LRU cache holding at most max_bytes of embeddings (max_bytes >= 1).
 *  @return the cache, or NULL with err (SAMDA_EINVAL, SAMDA_ENOMEM). Ownership: free with
 *  samda_embedding_cache_free(). */
samda_embedding_cache *samda_embedding_cache_new(size_t max_bytes, samda_error *err);
/** Free the cache and drop its references. NULL is a no-op. */
void samda_embedding_cache_free(samda_embedding_cache *c);
/** Look up (model fingerprint, model convention, key).
 *  @param key IN: caller's key (image content hash, or instance UID + frame), 1..1024 bytes.
 *  @return a new reference (caller releases) on a hit, NULL on a miss. Counts the hit or miss. */
samda_embedding *samda_embedding_cache_get(samda_embedding_cache *c, const samda_model *m, const char *key);
/** Insert or replace the entry for (e's fingerprint, e's convention, key), evicting least recently used
 *  entries until it fits.
 *  @return SAMDA_OK; SAMDA_EINVAL (NULL argument, bad key); SAMDA_ETOOBIG (e alone exceeds max_bytes: not
 *          stored); SAMDA_ENOMEM. Ownership: the cache takes its own reference; the caller keeps its own. */
samda_status samda_embedding_cache_put(samda_embedding_cache *c, const char *key, samda_embedding *e,
                                       samda_error *err);
/** Current counters. */
void samda_embedding_cache_get_stats(samda_embedding_cache *c, samda_embedding_cache_stats *out);

#ifdef __cplusplus
}
#endif
#endif
