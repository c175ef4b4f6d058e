//! `inputs`: a cluster's consumer reading a NATS JetStream stream
//! (`nats:URL[,URL...][;stream=HEP][;subject=hep][;partitions=A-B][;positions=FILE]`).

use toml::Spanned;

use super::Written;
use super::error::{ConfigError, Source};
use crate::nats::NatsInputSpec;

/// The inputs of `inputs` (none by default). Two inputs reading one partition of one
/// stream are refused: each would read all of it, and share a positions file.
pub(super) fn resolve(
    raw: Option<Vec<Spanned<String>>>,
    src: &Source<'_>,
) -> Result<Vec<Written<NatsInputSpec>>, ConfigError> {
    let mut inputs: Vec<Written<NatsInputSpec>> = Vec::new();
    for s in raw.unwrap_or_default() {
        let i = Written::parse(s.get_ref(), NatsInputSpec::parse)
            .map_err(|e| src.error(s.span(), format!("key `inputs`: {e}")))?;
        if let Some(other) = inputs.iter().find(|o| overlap(o.value(), i.value())) {
            return Err(src.error(
                s.span(),
                format!(
                    "key `inputs`: `{}` reads partitions that `{}` reads too",
                    i.text(),
                    other.text()
                ),
            ));
        }
        inputs.push(i);
    }
    Ok(inputs)
}

/// Whether `a` and `b` read a partition of the same stream.
pub(crate) fn overlap(a: &NatsInputSpec, b: &NatsInputSpec) -> bool {
    a.stream.stream == b.stream.stream
        && a.stream.urls.iter().any(|u| b.stream.urls.contains(u))
        && a.partitions.start() <= b.partitions.end()
        && b.partitions.start() <= a.partitions.end()
}
