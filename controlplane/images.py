"""Image garbage collection: the images of a Space's last `build_images_kept` successful builds stay (what a
rollback can serve); older ones are removed after each deploy. Never the image of the build that serves or is
pinned, nor one an instance of the Space still uses (a sleeping Space's stopped container); only this Space's own
builds are looked at, and the runtime only ever untags (docs/lifecycle.md)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from controlplane.models import Build, Space, utcnow
from controlplane.services import Services

log = logging.getLogger(__name__)


def collect(svc: Services, space_id: int) -> list[int]:
    """Remove what this Space no longer keeps; returns the builds whose image went."""
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        if space is None:
            return []
        kept = s.scalars(
            select(Build)
            .where(Build.space_id == space_id, Build.status == "SUCCESS", Build.image_removed_at.is_(None))
            .order_by(Build.id.desc())
        ).all()
        keep = {b.id for b in kept[: svc.settings.build_images_kept]} | {space.running_build_id, space.pinned_build_id}
        candidates = {b.id: b.image for b in kept if b.id not in keep and b.image}
        full_name = space.full_name
    if not candidates:
        return []
    in_use = {inst.build_id for inst in svc.runtime.list(full_name)}
    removed = []
    for build_id, image in candidates.items():
        if build_id in in_use:
            continue
        try:
            if svc.runtime.remove_image(image):
                removed.append(build_id)
        except Exception:  # a failed removal is tried again after the next deploy
            log.exception("could not remove image %s of %s", image, full_name)
    if removed:
        with svc.db.session() as s:
            for build in s.scalars(select(Build).where(Build.id.in_(removed))):
                build.image_removed_at = utcnow()
        log.info("removed the images of builds %s of %s", removed, full_name)
    return removed
