#version 330
in vec3 v_position;
in vec3 v_normal;
flat in float v_material;

layout(location = 0) out vec4 out_position;  // xyz mm, 1 = covered
layout(location = 1) out vec4 out_normal;    // xyz, material

void main() {
    out_position = vec4(v_position, 1.0);
    out_normal = vec4(normalize(v_normal), v_material);
}
