#version 330
// Camera-space position and normal per vertex (mm); everything else is fixed per model.
uniform mat4 u_projection;

in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in float in_label;
in float in_material;
in vec4 in_weights;
in vec3 in_tangent;  // props only (hair strands); unbound for the face: 0
in vec3 in_colour;   // props only (their albedo); unbound for the face: 0

out vec3 v_position;
out vec3 v_normal;
out vec2 v_uv;
flat out float v_label;
flat out float v_material;
out vec4 v_weights;
out vec3 v_tangent;
out vec3 v_colour;

void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_uv = in_uv;
    v_label = in_label;
    v_material = in_material;
    v_weights = in_weights;
    v_tangent = in_tangent;
    v_colour = in_colour;
    gl_Position = u_projection * vec4(in_position, 1.0);
}
