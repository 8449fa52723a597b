#version 330
// Rasterise the mesh in UV space: each texel learns where it lies on the posed face (camera space),
// its normal and its mirror texel (for filling unseen texels from the other side of the face).
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec2 in_mirror_uv;
uniform float u_tiles;  // UDIM tiles side by side in the map: u in [0, u_tiles)

out vec3 v_position;
out vec3 v_normal;
out vec2 v_mirror_uv;

void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_mirror_uv = vec2(in_mirror_uv.x / u_tiles, in_mirror_uv.y);
    gl_Position = vec4(vec2(in_uv.x / u_tiles, in_uv.y) * 2.0 - 1.0, 0.0, 1.0);  // skin triangles only
}
