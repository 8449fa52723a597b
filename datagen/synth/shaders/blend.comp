#version 430
// Shape blending (synth/device_geometry.py): one invocation per vertex coordinate (neighbouring
// invocations read neighbouring floats of each basis row), every sample of the batch:
// local = (mean - pivot) + sum_k c_k basis_k, model axes, mm. normals.comp applies the pose.
layout(local_size_x = LOCAL_SIZE) in;

layout(std430, binding = 0) readonly buffer Basis { float basis[]; };                // (K, U * 3)
layout(std430, binding = 1) readonly buffer Mean { float mean[]; };                  // (U * 3) mean - pivot
layout(std430, binding = 2) readonly buffer Coefficients { float coefficients[]; };  // (B, K)
layout(std430, binding = 4) writeonly buffer Positions { float positions[]; };       // (B, U * 3)

uniform int u_vertices;
uniform int u_components;
uniform int u_batch;

void main() {
    int i = int(gl_GlobalInvocationID.x);
    int size = 3 * u_vertices;
    if (i >= size) {
        return;
    }
    float sums[MAX_BATCH];
    for (int b = 0; b < u_batch; ++b) {
        sums[b] = 0.0;
    }
    // Components in order for every sample: a sample's sum does not depend on the batch it is in.
    for (int k = 0; k < u_components; ++k) {
        float value = basis[k * size + i];
        for (int b = 0; b < u_batch; ++b) {
            sums[b] += coefficients[b * u_components + k] * value;
        }
    }
    for (int b = 0; b < u_batch; ++b) {
        positions[b * size + i] = mean[i] + sums[b];
    }
}
