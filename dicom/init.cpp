/* Process-wide DCMTK set-up: codec registration and where DCMTK's log lines go.
 *
 * DCMTK keeps its codec registry and loggers in globals, so this is the one place in samda that
 * touches process state; everything is counted so nested init/shutdown pairs balance. It does not
 * configure networking beyond one global switch (no reverse DNS of peers). */
#include <mutex>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcobject.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmsr/cmr/init.h>
#include <dcmtk/oflog/appender.h>
#include <dcmtk/oflog/logger.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/oflog/spi/logevent.h>

#include "dicom.h"
#include "guard.h"

namespace {

namespace l4 = dcmtk::log4cplus;

/* Forwards each DCMTK log event to the caller's callback, one line per call. */
class callback_appender : public l4::Appender {
public:
    callback_appender(samda_dicom_log_fn fn, void *ctx) : fn_(fn), ctx_(ctx) {}
    ~callback_appender() override { destructorImpl(); }
    void close() override { closed = true; }

protected:
    void append(const l4::spi::InternalLoggingEvent &ev) override
    {
        samda_dicom_log_level lv;
        l4::LogLevel ll = ev.getLogLevel();
        if (ll >= l4::FATAL_LOG_LEVEL) lv = SAMDA_DICOM_LOG_FATAL;
        else if (ll >= l4::ERROR_LOG_LEVEL) lv = SAMDA_DICOM_LOG_ERROR;
        else if (ll >= l4::WARN_LOG_LEVEL) lv = SAMDA_DICOM_LOG_WARN;
        else if (ll >= l4::INFO_LOG_LEVEL) lv = SAMDA_DICOM_LOG_INFO;
        else if (ll >= l4::DEBUG_LOG_LEVEL) lv = SAMDA_DICOM_LOG_DEBUG;
        else lv = SAMDA_DICOM_LOG_TRACE;
        /* DCMTK messages can span lines (data set dumps): pass each line separately. */
        const OFString &m = ev.getMessage();
        size_t start = 0;
        while (start <= m.size()) {
            size_t nl = m.find('\n', start);
            if (nl == OFString_npos) nl = m.size();
            OFString line = m.substr(start, nl - start);
            if (!line.empty() || start == 0) fn_(ctx_, lv, ev.getLoggerName().c_str(), line.c_str());
            start = nl + 1;
        }
    }

private:
    samda_dicom_log_fn fn_;
    void *ctx_;
};

std::mutex init_mutex;
int init_count = 0;
bool callback_installed = false;
l4::SharedAppenderPtrList saved_appenders; /* DCMTK's console appender while ours is installed */

void restore_appenders()
{
    l4::Logger root = l4::Logger::getRoot();
    root.removeAllAppenders();
    for (auto &a : saved_appenders) root.addAppender(a);
    saved_appenders.clear();
    callback_installed = false;
}

void configure_logging(const samda_dicom_init_params &p)
{
    OFLogger::LogLevel level = p.debug ? OFLogger::DEBUG_LOG_LEVEL : OFLogger::FATAL_LOG_LEVEL;
    OFLog::configure(level); /* sets the root logger's level only */
    l4::Logger root = l4::Logger::getRoot();
    if (p.log) {
        if (!callback_installed) saved_appenders = root.getAllAppenders();
        root.removeAllAppenders();
        root.addAppender(l4::SharedAppenderPtr(new callback_appender(p.log, p.log_ctx)));
        callback_installed = true;
    } else if (callback_installed) {
        restore_appenders();
    }
}

} // namespace

extern "C" void samda_dicom_init_params_init(samda_dicom_init_params *p)
{
    if (!p) return;
    p->debug = false;
    p->log = nullptr;
    p->log_ctx = nullptr;
}

extern "C" samda_status samda_dicom_init(const samda_dicom_init_params *p, samda_error *err)
{
    return dicom_guard(err, "initialising DCMTK", SAMDA_EINTERNAL, [&]() -> samda_status {
        samda_dicom_init_params defaults;
        samda_dicom_init_params_init(&defaults);
        const samda_dicom_init_params &params = p ? *p : defaults;
        std::lock_guard<std::mutex> lock(init_mutex);
        configure_logging(params);
        if (init_count == 0) {
            DJDecoderRegistration::registerCodecs();
            DJLSDecoderRegistration::registerCodecs();
            DcmRLEDecoderRegistration::registerCodecs();
            /* Peers are identified by address; a reverse lookup only adds a DNS timeout. */
            dcmDisableGethostbyaddr.set(OFTrue);
            /* Some writers leave megabytes of zeros after the pixel data; DCMTK parses them as
             * hundreds of thousands of (0000,0000) elements (seconds per file). Whole-file reads
             * (DICOM JSON, frames, C-STORE SCU) stop after the top-level Pixel Data instead; what
             * may legally follow it (trailing padding, digital signatures) is dropped with it. */
            dcmStopParsingAfterElement.set(DCM_PixelData);
            /* The TID 1500 writer's context groups fill their code tables on first use, which is
             * not thread-safe: fill them now, before any thread writes an SR (DCMTK's advice). */
            CMR_ContentMappingResource::initializeAllContextGroups();
        }
        init_count++;
        return SAMDA_OK;
    });
}

extern "C" void samda_dicom_shutdown(void)
{
    dicom_guard_void([] {
        std::lock_guard<std::mutex> lock(init_mutex);
        if (init_count == 0) return;
        if (--init_count > 0) return;
        DJDecoderRegistration::cleanup();
        DJLSDecoderRegistration::cleanup();
        DcmRLEDecoderRegistration::cleanup();
        /* Drop the callback appender: its ctx may be freed after shutdown. */
        if (callback_installed) restore_appenders();
    });
}
