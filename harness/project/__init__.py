"""Text-only checks of a project profile: ``tinygpt-harness check defaults|corpus|claims``.

They read the project's files (and, for a page corpus source, its built site in headless
Chromium) and need no artifact and no host cell. Each returns :class:`Outcome` items; the
command prints them and exits 0 (all pass or listed-as-skipped), 1 (drift or failure) or 2 (a
bad profile, :class:`harness.profile.ProfileError`).

:mod:`harness.project.reference` is the one part a run uses: the profile's ``[reference]``
dumps, made and loaded when ``run --project`` plans.
"""
