"""Lineage for OpenLineage, through the provider's documented extension points.

- Our Asset URIs (``moesif://<conn id>/users``, ``moesif://<conn id>/companies``,
  ``segment://<conn id>/identify``) are registered in ``provider.get_provider_info`` with a
  converter to OpenLineage datasets (AIP-60 ``asset-uris``), so the inlets and outlets the
  DAG declares become OpenLineage inputs and outputs.
- Each stage reports what it read or wrote to Airflow's hook lineage collector, with the
  counts as the asset's extra; the converter turns them into a dataset facet.

Without the OpenLineage provider, Airflow's collector is a no-op and nothing changes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

SCHEMES = ("moesif", "segment")


def report(hook: Any, *, inputs: dict[str, dict] | None = None,
           outputs: dict[str, dict] | None = None) -> None:
    """Tell Airflow's hook lineage collector what ``hook``'s task read and wrote (URI ->
    counts)."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    for uri, extra in (inputs or {}).items():
        collector.add_input_asset(context=hook, uri=uri, asset_extra=extra)
    for uri, extra in (outputs or {}).items():
        collector.add_output_asset(context=hook, uri=uri, asset_extra=extra)


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's check of our Asset URIs: a connection id and a path."""
    if not uri.netloc or not uri.path.strip("/"):
        raise ValueError(f"{uri.scheme}:// URIs name a connection and an entity, like "
                         f"{uri.scheme}://{uri.scheme}_default/users")
    return uri


def to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """An OpenLineage dataset: namespace ``<scheme>://<conn id>``, name the entity, and the
    counts (when reported) as the ``moesifSegmentSync`` facet."""
    import attrs
    from airflow.providers.common.compat.openlineage.facet import Dataset, DatasetFacet

    @attrs.define
    class MoesifSegmentSyncDatasetFacet(DatasetFacet):
        counts: dict = attrs.field(factory=dict)

    parsed = urlsplit(asset.uri)
    counts = {key: value for key, value in (asset.extra or {}).items()
              if isinstance(value, int | float | str | bool)}
    facets = {"moesifSegmentSync": MoesifSegmentSyncDatasetFacet(counts=counts)} if counts \
        else {}
    return Dataset(namespace=f"{parsed.scheme}://{parsed.netloc}",
                   name=parsed.path.strip("/"), facets=facets)
