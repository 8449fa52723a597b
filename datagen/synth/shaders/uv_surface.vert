#version 330
// Rasterise the mean face in UV space (uv_layout.rasterise_mean_face): each texel learns where it
// lies on the face (model space, mm), its normal and its material.
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in float in_material;
uniform float u_tiles;  // UDIM tiles side by side in the map: u in [0, u_tiles)

out vec3 v_position;
out vec3 v_normal;
flat out float v_material;

void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_material = in_material;
    gl_Position = vec4(vec2(in_uv.x / u_tiles, in_uv.y) * 2.0 - 1.0, 0.0, 1.0);
}
