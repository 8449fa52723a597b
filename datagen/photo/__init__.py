"""Real photos: read them, find their landmarks, fit the model, recover lighting and albedo,
keep them in texture libraries, and re-render them photo-realistically.

``images`` (reading, cropping) -> ``landmarks`` (.pts, detection) -> ``fitting`` (eos +
refinement) -> ``texture`` (SH lighting, UV albedo) -> ``fitter`` (``datagen fit``) ->
``library`` (texture libraries on disk) -> ``photoreal`` (the warped photo behind a re-rendered face).
"""
