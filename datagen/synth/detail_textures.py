"""The fine detail's maps on the GPU (``detail_bank.DetailBank``) and the uniforms that pick a
sample's detail (``detail.SurfaceDetail``), for face.frag's ``fine_surface``. Made once per renderer."""

from __future__ import annotations

import numpy as np


class DetailTextures:
    """The bank's reference surface, crease templates and pore noise, mipmapped, bound to texture
    units 2-4; a sample's photo detail map on unit 5 (uploaded when it changes)."""

    def __init__(self, ctx, program, bank):
        self.ctx, self.program, self.bank = ctx, program, bank
        shape = bank.reference.shape[1::-1]
        self.reference = ctx.texture(shape, 4, np.ascontiguousarray(bank.reference, np.float32).tobytes(), dtype="f4")
        layers = -(-bank.creases.shape[-1] // 4)
        creases = np.zeros(bank.creases.shape[:2] + (4 * layers,), np.float32)
        creases[..., :bank.creases.shape[-1]] = bank.creases
        creases = creases.reshape(creases.shape[:2] + (layers, 4)).transpose(2, 0, 1, 3)
        self.creases = ctx.texture_array(shape + (layers,), 4, np.ascontiguousarray(creases, np.float16).tobytes(),
                                         dtype="f2")
        n = bank.noise.shape[0]
        self.pores = ctx.texture3d((n, n, n), 4, np.ascontiguousarray(bank.noise).tobytes())
        for texture in (self.reference, self.creases, self.pores):
            texture.filter = (ctx.LINEAR_MIPMAP_LINEAR, ctx.LINEAR)
            texture.build_mipmaps()
        self.pores.repeat_x = self.pores.repeat_y = self.pores.repeat_z = True
        for texture in (self.reference, self.creases):
            texture.repeat_x = texture.repeat_y = False
        program["u_detail_tiles"] = float(bank.tiles)
        program["u_detail_texels"] = (float(shape[0]), float(shape[1]))
        program["u_noise_voxels"] = float(n)
        self._photo_texture = self._photo_source = None

    def use(self, detail) -> None:
        """Sample uniforms of a scene's ``detail.SurfaceDetail`` (None: none)."""
        program = self.program
        program["u_detail"] = detail is not None
        if detail is None:
            return
        weights = np.zeros(12, np.float32)
        weights[:len(detail.crease_mm)] = detail.crease_mm
        program["u_crease_weight"].write(weights.tobytes())
        program["u_pore_weight"].value = tuple(float(w) for w in detail.pore_mm)
        program["u_noise_frequency"] = float(detail.noise_frequency)
        program["u_noise_origin"].value = tuple(float(o) for o in detail.noise_origin)
        self._use_photo_map(detail.photo_map)
        program["u_photo_detail_weight"] = float(detail.photo_mm)
        self.reference.use(2)
        self.creases.use(3)
        self.pores.use(4)

    def _use_photo_map(self, photo_map) -> None:
        self.program["u_use_photo_detail"] = photo_map is not None
        if photo_map is None:
            return
        if photo_map is not self._photo_source:
            self._photo_source = photo_map
            texels = np.ascontiguousarray(photo_map.resized(self.bank.size), np.float32)  # row 0 = v 0
            if self._photo_texture is not None:
                self._photo_texture.release()
            self._photo_texture = self.ctx.texture(texels.shape[1::-1], 1, texels.tobytes(), dtype="f4")
            self._photo_texture.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
            self._photo_texture.build_mipmaps()
        self._photo_texture.use(5)
