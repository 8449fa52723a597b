#version 430
// The pose and vertex normals (synth/device_geometry.py), in two stages of one shader:
// 0: per (drawn triangle, sample) its normal scaled by twice its area, cross(b - a, c - a);
// 1: per (render vertex, sample) the sum over the triangles around its vertex, in ascending
//    triangle order as geometry.vertex_normals sums them, normalised; written with the position in
//    the renderer's vertex layout (position, normal).
layout(local_size_x = LOCAL_SIZE) in;

layout(std430, binding = 4) readonly buffer Positions { float positions[]; };    // (B, U * 3)
layout(std430, binding = 5) readonly buffer Triangles { int triangles[]; };      // (F * 3) used-vertex ids
layout(std430, binding = 6) buffer FaceNormals { float face_normals[]; };        // (B, F * 3)
layout(std430, binding = 7) readonly buffer FacesStart { int faces_start[]; };   // (U + 1) CSR offsets
layout(std430, binding = 8) readonly buffer Faces { int faces[]; };              // triangle ids per vertex
layout(std430, binding = 9) readonly buffer RenderUsed { int render_used[]; };   // (R) used-vertex ids
layout(std430, binding = 10) writeonly buffer Output { float vertices_out[]; };  // (B, R, 6)

uniform int u_vertices;
uniform int u_triangles;
uniform int u_render_vertices;
uniform int u_batch;
uniform int u_stage;

layout(std430, binding = 3) readonly buffer Poses { float poses[]; };              // (B, 12): R row-major, t

// Camera space: R local + t (camera.py's to_camera; the blend's local is v - pivot).
vec3 position(int b, int u) {
    int at = b * 3 * u_vertices + 3 * u;
    vec3 local = vec3(positions[at], positions[at + 1], positions[at + 2]);
    int p = 12 * b;
    return vec3(dot(vec3(poses[p], poses[p + 1], poses[p + 2]), local),
                dot(vec3(poses[p + 3], poses[p + 4], poses[p + 5]), local),
                dot(vec3(poses[p + 6], poses[p + 7], poses[p + 8]), local))
           + vec3(poses[p + 9], poses[p + 10], poses[p + 11]);
}

void face_normal(int f, int b) {
    vec3 a = position(b, triangles[3 * f]);
    vec3 n = cross(position(b, triangles[3 * f + 1]) - a, position(b, triangles[3 * f + 2]) - a);
    int at = b * 3 * u_triangles + 3 * f;
    face_normals[at] = n.x;
    face_normals[at + 1] = n.y;
    face_normals[at + 2] = n.z;
}

void vertex(int r, int b) {
    int u = render_used[r];
    vec3 sum = vec3(0.0);
    for (int i = faces_start[u]; i < faces_start[u + 1]; ++i) {
        int at = b * 3 * u_triangles + 3 * faces[i];
        sum += vec3(face_normals[at], face_normals[at + 1], face_normals[at + 2]);
    }
    vec3 n = sum / max(length(sum), 1e-12);
    vec3 p = position(b, u);
    int at = (b * u_render_vertices + r) * 6;
    vertices_out[at] = p.x;
    vertices_out[at + 1] = p.y;
    vertices_out[at + 2] = p.z;
    vertices_out[at + 3] = n.x;
    vertices_out[at + 4] = n.y;
    vertices_out[at + 5] = n.z;
}

void main() {
    int i = int(gl_GlobalInvocationID.x);
    int b = int(gl_GlobalInvocationID.y);
    if (b >= u_batch) {
        return;
    }
    if (u_stage == 0 && i < u_triangles) {
        face_normal(i, b);
    } else if (u_stage == 1 && i < u_render_vertices) {
        vertex(i, b);
    }
}
