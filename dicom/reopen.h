/* dicom/ module-internal (never included outside dicom/): DCMTK input streams that can be reopened,
 * for reading untrusted data without letting a declared length decide an allocation.
 *
 * Usage: build a Source (a borrowed buffer, or a path), construct
 * dicom_reopen::Reopenable<DcmInputBufferStream> (then setBuffer/setEos) or
 * dicom_reopen::Reopenable<DcmInputFileStream>(src, OFFilename(path)), and hand it to
 * DcmFileFormat::read()/readUntilTag() between transferInit() and transferEnd(), as
 * DcmFileFormat::loadFile() does; or call dicom_reopen::load_file(). Values longer than the
 * read's maxReadLength are then read on demand: the Source must outlive the DcmFileFormat's use.
 * Thread-safety: nothing shared; one stream per thread. */
#ifndef SAMDA_DICOM_REOPEN_H
#define SAMDA_DICOM_REOPEN_H

#include <new>
#include <string>
#include <utility>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcvrul.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcistrmf.h>

namespace dicom_reopen {

/* Streams DCMTK may reopen. Given a factory, DCMTK leaves a value longer than max_read_length in
 * place and first checks its declared length against the bytes left; without one it allocates
 * whatever length the data claims before reading: up to 4 GiB for a few bytes of input (found by
 * tests/fuzz/fuzz_dicom). DCMTK offers no factory for a memory buffer, nor for a file once the
 * deflate filter is on (Deflated Explicit VR Little Endian), so these streams make their own:
 * reopen the same bytes, skip to where deflate starts, inflate again up to the position. */
struct Source {
    const void *data = nullptr; /* a buffer (borrowed: it must outlive every stream made) ... */
    offile_off_t size = 0;
    std::string path;           /* ... or a file */
};

inline DcmInputStream *open_source(const Source &src);

class SourceFactory : public DcmInputStreamFactory {
public:
    SourceFactory(const Source &src, bool compressed, E_StreamCompression type, offile_off_t raw, offile_off_t at)
        : src_(src), compressed_(compressed), type_(type), raw_(raw), at_(at)
    {
    }
    DcmInputStream *create() const override
    {
        DcmInputStream *s = open_source(src_);
        if (!s) return nullptr;
        bool ok = s->good();
        if (ok && compressed_)
            ok = s->skip(raw_) == raw_ && s->installCompressionFilter(type_).good();
        if (ok) ok = s->skip(at_) == at_;
        if (!ok) {
            delete s;
            return nullptr;
        }
        return s;
    }
    DcmInputStreamFactory *clone() const override { return new SourceFactory(*this); }
    /* The kind DCMTK sees: reopened and read like a file, never deleted like a temporary file. */
    DcmInputStreamFactoryType ident() const override { return DFT_DcmInputFileStreamFactory; }

private:
    Source src_;
    bool compressed_;
    E_StreamCompression type_;
    offile_off_t raw_; /* bytes before the compressed part */
    offile_off_t at_;  /* position: in the inflated data when compressed_, else from the start */
};

template <class Base>
class Reopenable : public Base {
public:
    template <class... A>
    explicit Reopenable(const Source &src, A &&...a) : Base(std::forward<A>(a)...), src_(src)
    {
    }
    OFCondition installCompressionFilter(E_StreamCompression type) override
    {
        OFCondition c = Base::installCompressionFilter(type);
        if (c.good()) {
            compressed_ = true;
            type_ = type;
            raw_ = this->tell();
        }
        return c;
    }
    DcmInputStreamFactory *newFactory() const override
    {
        if (!compressed_) {
            if (DcmInputStreamFactory *f = Base::newFactory()) return f; /* DCMTK's, for a file */
            return new (std::nothrow) SourceFactory(src_, false, ESC_none, 0, this->tell());
        }
        return new (std::nothrow) SourceFactory(src_, true, type_, raw_, this->tell() - raw_);
    }

private:
    Source src_;
    bool compressed_ = false;
    E_StreamCompression type_ = ESC_none;
    offile_off_t raw_ = 0;
};

inline DcmInputStream *open_source(const Source &src)
{
    if (src.data) {
        auto *s = new (std::nothrow) Reopenable<DcmInputBufferStream>(src);
        if (s) {
            s->setBuffer(src.data, src.size);
            s->setEos();
        }
        return s;
    }
    return new (std::nothrow) Reopenable<DcmInputFileStream>(src, OFFilename(src.path.c_str()));
}

/** DcmFileFormat::readUntilTag() between transferInit() and transferEnd(), with a placeholder
 *  element in the data set while it reads. Why: DCMTK 3.6.7 checks the global
 *  dcmStopParsingAfterElement (samda_dicom_init() sets it to Pixel Data) against the data set's
 *  current element after each element it reads, and dereferences NULL when the list is still empty,
 *  that is when the first element read was not inserted (a 12-byte data set crashed every reader:
 *  tests/fuzz/corpus/dicom/segv_stop_after_*). The placeholder, (0000,0000), a tag that sorts first
 *  and that stored data sets do not carry, keeps the list non-empty; it is removed afterwards.
 *  @return DCMTK's condition. */
inline OFCondition read_guarded(DcmFileFormat &ff, DcmInputStream &in, Uint32 max_read_length,
                                const DcmTagKey &stop = DCM_UndefinedTagKey)
{
    ff.transferInit();
    DcmDataset *ds = ff.getDataset();
    DcmElement *placeholder = nullptr;
    if (ds) {
        placeholder = new (std::nothrow) DcmUnsignedLong(DcmTag(0x0000, 0x0000, EVR_UL));
        if (!placeholder) return EC_MemoryExhausted;
        if (ds->insert(placeholder).bad()) {
            delete placeholder;
            placeholder = nullptr;
        }
    }
    OFCondition c = ff.readUntilTag(in, EXS_Unknown, EGL_noChange, max_read_length, stop);
    ff.transferEnd();
    if (placeholder && ff.getDataset() == ds)
        delete ds->remove(placeholder);
    return c;
}

/** DcmFileFormat::loadFile(path) (whole file, values over max_read_length on demand; with stop,
 *  loadFileUntilTag) through a reopenable stream and read_guarded().
 *  @return DCMTK's condition (EC_InvalidStream for a length beyond the data). */
inline OFCondition load_file(DcmFileFormat &ff, const char *path, Uint32 max_read_length = DCM_MaxReadLength,
                             const DcmTagKey &stop = DCM_UndefinedTagKey)
{
    Source src;
    src.path = path;
    Reopenable<DcmInputFileStream> in(src, OFFilename(path));
    if (in.status().bad()) return in.status();
    return read_guarded(ff, in, max_read_length, stop);
}

} // namespace dicom_reopen

#endif
