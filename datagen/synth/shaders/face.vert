#version 330
// Camera-space position and normal per vertex (mm); everything else is fixed per model.
// Drawn one sample at a time, they are vertex attributes; in a layered batch (LAYERED, render.py's
// layered draws) instance k is sample k, whose vertices it reads from the device geometry's output and
// draws into layer k of the framebuffers.
uniform mat4 u_projection[SAMPLES];

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
#ifdef LAYERED
layout(std430, binding = VERTICES_BINDING) readonly buffer Vertices {
    float u_vertices[];  // (samples, render vertices, 6): position, normal (device_geometry.py's output)
};
uniform int u_render_vertices;
#endif

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
flat out int v_sample;

void main() {
#ifdef LAYERED
    int at = 6 * (gl_InstanceID * u_render_vertices + gl_VertexID);  // gl_VertexID: the index drawn
    v_position = vec3(u_vertices[at], u_vertices[at + 1], u_vertices[at + 2]);
    v_normal = vec3(u_vertices[at + 3], u_vertices[at + 4], u_vertices[at + 5]);
    v_sample = gl_InstanceID;
    gl_Layer = gl_InstanceID;
#else
    v_position = in_position;
    v_normal = in_normal;
    v_sample = 0;
#endif
    v_uv = in_uv;
    v_label = in_label;
    v_material = in_material;
    v_weights = in_weights;
    v_tangent = in_tangent;
    v_colour = in_colour;
    v_prev = in_prev;
    v_next = in_next;
    gl_Position = u_projection[v_sample] * vec4(v_position, 1.0);
}
