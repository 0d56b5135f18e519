//! Logs and traces of the `weir` binary: one `tracing` subscriber with two outputs.
//!
//! ```text
//!  tracing spans and events ──┬─▶ fmt layer (WEIR_LOG filter) ── stderr: text, or JSON lines
//!                             │     (WEIR_LOG_FORMAT=json) that carry trace_id / span_id
//!                             └─▶ OpenTelemetry layer (weir's own INFO spans) ── SDK
//!                                   └─▶ batch ── OTLP http/protobuf, only when
//!                                        OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set
//! ```
//!
//! Spans (all at INFO, target `weir_pipeline`): `recovery` (taking a partition over),
//! `commit` (one commit of a partition or maintenance job, every retry included) with its
//! children `upload` (intent and files) and `ledger` (the entry, and what settles a lost
//! race). The OpenTelemetry layer runs whether or not anything is exported, so that log
//! lines can name the trace they belong to; without an endpoint no span leaves the process.
//!
//! The exporter's HTTP requests go through the reqwest client object_store already builds
//! (with its TLS), sent on the tokio runtime: the SDK's batch processor runs on a thread of
//! its own, outside the runtime, and hands each request over. The standard OTLP variables
//! apply (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`); `OTEL_EXPORTER_OTLP_PROTOCOL` must be
//! `http/protobuf` (the default) when set, as there is no gRPC or JSON exporter.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("OTLP trace exporter: building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0}: weir exports traces over http/protobuf only; \
         unset it or set it to http/protobuf"
    )]
    Protocol(String),
    #[error("installing the log subscriber: {0}")]
    Install(String),
}

/// The installed trace pipeline. [`Telemetry::shutdown`] sends the spans still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans leave the process (an OTLP endpoint is set).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is queued and stops the exporter. Blocks: call it outside the tokio
    /// runtime's threads, while the runtime still runs (the requests are sent on it).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

/// Whether the standard variables ask for trace export.
pub fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber: logs on stderr filtered by `WEIR_LOG` (else
/// `default_filter`), JSON when `WEIR_LOG_FORMAT=json`, and weir's spans to the
/// OpenTelemetry SDK, exported when [`endpoint_configured`]. `runtime` sends the exports.
pub fn init(
    default_filter: &str,
    runtime: tokio::runtime::Handle,
) -> Result<Telemetry, TelemetryError> {
    let exporting = endpoint_configured();
    let resource = {
        let builder = opentelemetry_sdk::Resource::builder();
        // The detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without
        // either, the service is "weir" rather than "unknown_service".
        let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name"));
        if named {
            builder.build()
        } else {
            builder.with_service_name("weir").build()
        }
    };
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if exporting {
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            && protocol != "http/protobuf"
        {
            return Err(TelemetryError::Protocol(protocol));
        }
        let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(OnRuntime { client, runtime })
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("weir"))
        .with_location(false)
        .with_threads(false)
        .with_filter(
            Targets::new()
                .with_target("weir_pipeline", tracing::Level::INFO)
                .with_target("weir", tracing::Level::INFO),
        );
    let filter =
        || EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f == "json");
    let json_logs = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .map_event_format(WithTraceIds)
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let text_logs = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(json_logs)
        .with(text_logs)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    if let Ok(value) = std::env::var("WEIR_LOG")
        && let Err(error) = EnvFilter::try_new(&value)
    {
        tracing::warn!(
            value,
            %error,
            default = default_filter,
            "invalid WEIR_LOG filter; logging at the default level"
        );
    }
    Ok(Telemetry {
        provider,
        exporting,
    })
}

/// The exporter's HTTP client: reqwest, whose futures need the tokio runtime, driven on
/// it from the SDK's own export thread.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// JSON log lines with the `trace_id` and `span_id` of the span they were logged in (when
/// it is one of weir's traced spans), as the first two keys.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // Before the inner format borrows the span's extensions.
        let ids = if ctx.lookup_current().is_some() {
            let context = tracing::Span::current().context();
            let span = context.span();
            let span = span.span_context();
            span.is_valid()
                .then(|| (span.trace_id().to_string(), span.span_id().to_string()))
        } else {
            None
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            _ => writer.write_str(&line),
        }
    }
}
