"""Synthesis: job spec -> sample parameters -> scenes -> rendered pixels -> annotated samples.

``sampling`` (priors -> FaceParams) -> ``geometry`` (SceneBatch: geometry, camera, light,
material; the model's MeshTopology) -> ``render`` (RenderOutput, moderngl/EGL) ->
``background`` (what is behind the face) -> ``annotate`` (a ``data.fields.SampleBatch``);
``generator`` runs them per process, ``preview`` draws contact sheets, ``face_parts`` holds the
segmentation labels and per-vertex shading weights.
"""
