/* One frame's pixels as native bytes, for DICOMweb's WADO-RS /frames resource.
 *
 * Only the frame asked for is read and decoded (DCMTK's per-frame access): a 1,000-frame file costs
 * one frame's work. Output is always little-endian, samples interleaved; 1-bit frames are re-aligned
 * to a byte boundary. It does not rescale, window or render (that is the viewer's job) and does not
 * re-encode (no transcoding to another compressed syntax). */
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfcache.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "dicom.h"
#include "guard.h"
#include "reopen.h"

namespace {

const Uint32 lazy_read_length = 4096;

/* Encapsulated syntaxes the codecs registered by samda_dicom_init() decode (init.cpp). Anything
 * else encapsulated (JPEG 2000 above all: Debian's DCMTK has no codec for it) is refused up front,
 * with a clear status instead of DCMTK's "no codec" condition. */
const E_TransferSyntax decodable[] = {
    EXS_JPEGProcess1, EXS_JPEGProcess2_4, EXS_JPEGProcess14, EXS_JPEGProcess14SV1,
    EXS_JPEGLSLossless, EXS_JPEGLSLossy, EXS_RLELossless,
};

bool can_decode(E_TransferSyntax x)
{
    for (E_TransferSyntax d : decodable)
        if (d == x) return true;
    return false;
}

unsigned long pd_length(DcmElement *el) { return el->getLengthField(); }

unsigned get_us(DcmItem &ds, const DcmTagKey &tag, unsigned dflt)
{
    Uint16 v = 0;
    return ds.findAndGetUint16(tag, v).good() ? v : dflt;
}

template <size_t N>
void copy_str(char (&dst)[N], const char *s)
{
    std::snprintf(dst, N, "%s", s ? s : "");
}

/* PS3.5 8.1.1: 1-bit frames follow each other bit by bit; frame k starts at bit k*rows*columns. */
samda_status read_bit_frame(DcmElement *pd, unsigned long frame0, unsigned long n_pixels, std::vector<unsigned char> &out,
                            DcmFileCache &cache, samda_error *err, const char *path)
{
    unsigned long first_bit = frame0 * n_pixels;
    unsigned long first_byte = first_bit / 8, shift = first_bit % 8;
    unsigned long n_bytes = (n_pixels + 7) / 8;
    unsigned long need = (shift + n_pixels + 7) / 8;
    if (first_byte + need > pd->getLengthField())
        return samda_fail(err, SAMDA_EBADDICOM, "reading frame %lu of %s: pixel data is %lu bytes, too short for it",
                          frame0 + 1, path, (unsigned long)pd->getLengthField());
    std::vector<unsigned char> raw(need + 1, 0);
    if (pd->getPartialValue(raw.data(), (Uint32)first_byte, (Uint32)need, &cache).bad())
        return samda_fail(err, SAMDA_EBADDICOM, "reading frame %lu of %s: cannot read its pixel data", frame0 + 1, path);
    out.assign(n_bytes, 0);
    for (unsigned long i = 0; i < n_bytes; i++)
        out[i] = (unsigned char)((raw[i] >> shift) | (shift ? raw[i + 1] << (8 - shift) : 0));
    if (n_pixels % 8) out[n_bytes - 1] &= (unsigned char)((1u << (n_pixels % 8)) - 1); /* no bits of the next frame */
    return SAMDA_OK;
}

samda_status read_frame(const char *path, unsigned frame, std::vector<unsigned char> &out, samda_dicom_frame_info &info,
                        samda_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return samda_fail(err, e == ENOENT ? SAMDA_ENOENT : SAMDA_EIO, "reading frame %u of %s: %s", frame, path,
                          std::strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) return samda_fail(err, SAMDA_EIO, "reading frame %u of %s: not a regular file", frame, path);
    DcmFileFormat ff;
    OFCondition cond = dicom_reopen::load_file(ff, path, lazy_read_length);
    if (cond.bad()) return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: %s", frame, path, cond.text());
    DcmDataset &ds = *ff.getDataset();
    E_TransferSyntax xfer = ds.getOriginalXfer();
    DcmXfer x(xfer);
    copy_str(info.transfer_syntax_uid, x.getXferID());

    info.rows = get_us(ds, DCM_Rows, 0);
    info.columns = get_us(ds, DCM_Columns, 0);
    info.samples_per_pixel = get_us(ds, DCM_SamplesPerPixel, 1);
    info.bits_allocated = get_us(ds, DCM_BitsAllocated, 0);
    info.bits_stored = get_us(ds, DCM_BitsStored, info.bits_allocated);
    info.pixel_representation = get_us(ds, DCM_PixelRepresentation, 0);
    unsigned planar = get_us(ds, DCM_PlanarConfiguration, 0);
    Sint32 nf = 1;
    if (ds.findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1) nf = 1;
    info.number_of_frames = (unsigned)nf;
    OFString pi;
    ds.findAndGetOFString(DCM_PhotometricInterpretation, pi);
    copy_str(info.photometric_interpretation, pi.c_str());

    DcmElement *el = nullptr;
    if (ds.findAndGetElement(DCM_PixelData, el).bad() || !el)
        return samda_fail(err, SAMDA_ENOENT, "reading frame %u of %s: the instance has no pixel data", frame, path);
    if (frame < 1 || frame > info.number_of_frames)
        return samda_fail(err, SAMDA_ENOENT, "reading frame %u of %s: frames are numbered 1 to %u", frame, path,
                          info.number_of_frames);
    if (!info.rows || !info.columns || !info.samples_per_pixel || info.samples_per_pixel > 4 ||
        (info.bits_allocated != 1 && info.bits_allocated != 8 && info.bits_allocated != 16 && info.bits_allocated != 32))
        return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: unusable image attributes (rows %u, columns %u, "
                          "samples %u, bits allocated %u)", frame, path, info.rows, info.columns, info.samples_per_pixel,
                          info.bits_allocated);
    if (x.isEncapsulated() && !can_decode(xfer))
        return samda_fail(err, SAMDA_ENOTSUP, "reading frame %u of %s: no decoder for %s here (samda cannot decode it)",
                          frame, path, x.getXferName());

    DcmFileCache cache;
    unsigned long n_pixels = (unsigned long)info.rows * info.columns;
    if (info.bits_allocated == 1 && !x.isEncapsulated()) {
        if (info.samples_per_pixel != 1)
            return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: 1-bit pixels with %u samples", frame, path,
                              info.samples_per_pixel);
        info.planar_configuration = 0;
        return read_bit_frame(el, frame - 1, n_pixels, out, cache, err, path);
    }

    unsigned bps = info.bits_allocated / 8;
    unsigned long expect = n_pixels * info.samples_per_pixel * bps;
    std::vector<unsigned char> buf;
    if (!x.isEncapsulated()) {
        /* Native: read the frame's bytes as the file holds them, then swap to little endian by the
         * sample size. (Asking DCMTK for little endian would swap by the VR's unit, 2 bytes for OW,
         * which is wrong for 32-bit samples in big endian files.) */
        unsigned long long offset = (unsigned long long)(frame - 1) * expect;
        if (offset + expect > pd_length(el))
            return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: pixel data is %lu bytes, %u frames of "
                              "%lu expected", frame, path, (unsigned long)pd_length(el), info.number_of_frames, expect);
        buf.resize(expect);
        E_ByteOrder order = x.getByteOrder() == EBO_BigEndian ? EBO_BigEndian : EBO_LittleEndian;
        if (el->getPartialValue(buf.data(), (Uint32)offset, (Uint32)expect, &cache, order).bad())
            return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: cannot read its pixel data", frame, path);
        if (order == EBO_BigEndian && bps > 1)
            for (unsigned long i = 0; i + bps <= expect; i += bps)
                for (unsigned a = 0, b = bps - 1; a < b; a++, b--) std::swap(buf[i + a], buf[i + b]);
    } else {
        DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
        Uint32 frame_size = 0;
        cond = pd->getUncompressedFrameSize(&ds, frame_size);
        if (cond.bad() || frame_size < expect)
            return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: %s", frame, path,
                              cond.bad() ? cond.text() : "decoded frame smaller than rows x columns x samples");
        buf.resize(frame_size);
        Uint32 start_fragment = 0;
        OFString model;
        cond = pd->getUncompressedFrame(&ds, frame - 1, start_fragment, buf.data(), frame_size, model, &cache);
        if (cond.bad())
            return samda_fail(err, SAMDA_EBADDICOM, "reading frame %u of %s: decoding %s: %s", frame, path,
                              x.getXferName(), cond.text());
        if (!model.empty()) copy_str(info.photometric_interpretation, model.c_str());
        /* Decoders may leave color-by-plane data and say so in the data set they were given. */
        planar = get_us(ds, DCM_PlanarConfiguration, 0);
    }
    buf.resize(expect);
    if (info.samples_per_pixel > 1 && planar == 1) {
        unsigned spp = info.samples_per_pixel;
        out.resize(expect);
        for (unsigned long i = 0; i < n_pixels; i++)
            for (unsigned s = 0; s < spp; s++)
                std::memcpy(&out[(i * spp + s) * bps], &buf[(s * n_pixels + i) * bps], bps);
    } else {
        out.swap(buf);
    }
    info.planar_configuration = 0;
    return SAMDA_OK;
}

} // namespace

extern "C" samda_status samda_dicom_frame_read(const char *path, unsigned frame, void **data, size_t *size,
                                               samda_dicom_frame_info *info, samda_error *err)
{
    if (data) *data = nullptr;
    if (size) *size = 0;
    if (!path || !data || !size)
        return samda_fail(err, SAMDA_EINVAL, "reading a frame: no %s", !path ? "path" : "output");
    return dicom_guard(err, "reading a frame", SAMDA_EBADDICOM, [&]() -> samda_status {
        samda_dicom_frame_info fi;
        std::memset(&fi, 0, sizeof fi);
        std::vector<unsigned char> out;
        samda_status st = read_frame(path, frame, out, fi, err);
        if (info) *info = fi;
        if (st != SAMDA_OK) return st;
        void *p = std::malloc(out.size() ? out.size() : 1);
        if (!p) return samda_fail(err, SAMDA_ENOMEM, "reading frame %u of %s: out of memory", frame, path);
        std::memcpy(p, out.data(), out.size());
        *data = p;
        *size = out.size();
        return SAMDA_OK;
    });
}
