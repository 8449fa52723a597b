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
in vec3 in_prev;     // flow renderers: this vertex in the previous and the next frame (camera space, mm)
in vec3 in_next;

out vec3 v_position;
out vec3 v_normal;
out vec2 v_uv;
flat out float v_label;
flat out float v_material;
out vec4 v_weights;
out vec3 v_tangent;
out vec3 v_colour;
out vec3 v_prev;
out vec3 v_next;

void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_uv = in_uv;
    v_label = in_label;
    v_material = in_material;
    v_weights = in_weights;
    v_tangent = in_tangent;
    v_colour = in_colour;
    v_prev = in_prev;
    v_next = in_next;
    gl_Position = u_projection * vec4(in_position, 1.0);
}
