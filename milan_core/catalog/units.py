"""Units and their exemplars: statistics, the k top images with their maps, and the images themselves.

An exemplar's path is the one its run read (``run_images``), so two runs over the same photos in
different folders each find their own files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from milan_core.catalog.base import CatalogBase
from milan_core.errors import UserError


@dataclass(frozen=True)
class ImageRecord:
    """A stored probe image (the thumbnail is a JPEG of the model's view); paths belong to runs."""

    image_id: int
    sha256: str
    width: int
    height: int
    label: str | None
    thumbnail: bytes


class UnitQueries(CatalogBase):
    """The ``units``, ``exemplars`` and ``images`` tables."""

    def unit_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM units"))

    def thumbnail_bytes(self) -> int:
        """What the stored thumbnails weigh together (the rest of a file is the units' own cost)."""
        return int(self.scalar("SELECT coalesce(sum(octet_length(thumbnail)), 0) FROM images"))

    def units(
        self, run_id: str | None = None, layer: str | None = None, limit: int | None = None, offset: int = 0
    ) -> pd.DataFrame:
        """Units with their statistics, optionally of one run and layer, in layer then unit order."""
        sql = (
            "SELECT u.*, u.layer || ':' || u.unit AS key FROM units u "
            "JOIN layers l USING (run_id, layer) "
            "WHERE (? IS NULL OR u.run_id = ?) AND (? IS NULL OR u.layer = ?) "
            "ORDER BY u.run_id, l.layer_index, u.unit LIMIT ? OFFSET ?"
        )
        return self.query(sql, [run_id, run_id, layer, layer, limit, offset])

    def unit_id(self, run_id: str, key: str) -> int:
        """The global id of ``layer:unit`` in a run."""
        layer, _, unit = key.rpartition(":")
        found = self.scalar(
            "SELECT unit_id FROM units WHERE run_id = ? AND layer = ? AND unit = TRY_CAST(? AS INTEGER)",
            [run_id, layer, unit],
        )
        if found is None:
            raise UserError(f"no unit {key!r} in run {run_id!r} (units are named layer:index)")
        return int(found)

    def exemplars(self, unit_id: int, decode: bool = True) -> pd.DataFrame:
        """A unit's exemplars in rank order; with ``decode`` a ``map`` column of (H, W) float arrays."""
        frame = self.query(
            "SELECT e.*, p.path, i.label, u.threshold, l.map_height, l.map_width FROM exemplars e "
            "JOIN images i USING (image_id) JOIN units u USING (unit_id) "
            "JOIN run_images p ON p.run_id = u.run_id AND p.image_id = e.image_id "
            "JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer "
            "WHERE e.unit_id = ? ORDER BY e.rank",
            [unit_id],
        )
        if decode:
            from milan_core.exemplars import dequantise  # torch: seconds to import, kept off the catalog's import

            frame["map"] = [
                dequantise(bytes(r.amap), r.amap_min, r.amap_max, r.map_height, r.map_width)
                for r in frame.itertuples()
            ]
        return frame

    def run_exemplars(self, run_id: str) -> pd.DataFrame:
        """Every exemplar of a run in one query (layer, unit, rank order), with its unit's threshold,
        its layer's map size and the path the run read it from; maps still quantised."""
        return self.query(
            "SELECT u.unit_id, u.layer, u.unit, u.threshold, l.layer_index, l.map_height, "
            "l.map_width, e.rank, e.image_id, e.activation, e.amap_min, e.amap_max, e.amap, p.path "
            "FROM units u JOIN layers l USING (run_id, layer) JOIN exemplars e USING (unit_id) "
            "JOIN run_images p ON p.run_id = u.run_id AND p.image_id = e.image_id "
            "WHERE u.run_id = ? ORDER BY l.layer_index, u.unit, e.rank",
            [run_id],
        )

    def layer_units(self, run_id: str, layers: list[str], describer: str | None) -> pd.DataFrame:
        """Every unit of the layers (unit_id, layer, unit, key, description — None where the
        describer did not describe it, or with no describer)."""
        return self.query(
            "SELECT u.unit_id, u.layer, u.unit, u.layer || ':' || u.unit AS key, d.description "
            "FROM units u JOIN layers l USING (run_id, layer) "
            "LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ? "
            "WHERE u.run_id = ? AND list_contains(?, u.layer) ORDER BY l.layer_index, u.unit",
            [describer, run_id, list(layers)],
        )

    def image(self, image_id: int) -> ImageRecord:
        row = self.con.execute(
            "SELECT image_id, sha256, width, height, label, thumbnail FROM images WHERE image_id = ?",
            [image_id],
        ).fetchone()
        if row is None:
            raise UserError(f"no image {image_id} in {self.path}")
        return ImageRecord(*row[:5], thumbnail=bytes(row[5]))
