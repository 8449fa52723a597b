#version 330
// Per texel: the photo's colour where the face point is visible (depth test against the face's own
// depth map from the camera), a visibility weight (cosine between normal and view), the normal and
// the mirror texel. Photo and depth map are sampled at pixel (u, v), row 0 = top, as in camera.project.
uniform vec4 u_intrinsics;        // fx, fy, cx, cy
uniform vec2 u_image_size;        // width, height in pixels
uniform sampler2D u_photo;        // linear RGB, row 0 = top
uniform sampler2D u_depth;        // mm, 0 on background, row 0 = top (nearest filtering)
uniform float u_depth_tolerance;  // mm

in vec3 v_position;
in vec3 v_normal;
in vec2 v_mirror_uv;

layout(location = 0) out vec4 out_observed;  // rgb, visibility weight
layout(location = 1) out vec4 out_normal;    // camera-space normal, coverage
layout(location = 2) out vec4 out_mirror;    // mirror uv

void main() {
    vec3 n = normalize(v_normal);
    float depth = -v_position.z;
    vec2 pixel = vec2(u_intrinsics.x * v_position.x / depth + u_intrinsics.z,
                      u_intrinsics.w - u_intrinsics.y * v_position.y / depth);
    vec2 st = pixel / u_image_size;
    float facing = dot(n, normalize(-v_position));
    float weight = 0.0;
    vec3 colour = vec3(0.0);
    if (all(greaterThanEqual(st, vec2(0.0))) && all(lessThan(st, vec2(1.0))) && facing > 0.0) {
        float seen = texture(u_depth, st).r;
        if (seen > 0.0 && depth <= seen + u_depth_tolerance) {
            weight = facing;
            colour = texture(u_photo, st).rgb;
        }
    }
    out_observed = vec4(colour, weight);
    out_normal = vec4(n, 1.0);
    out_mirror = vec4(v_mirror_uv, 0.0, 1.0);
}
