#version 330
// Outputs: 0 = sRGB colour (alpha = coverage), 1 = (depth mm, camera-space normal), 2 = label / 255,
// 3 = (depth mm, normal) of the surface displaced by the fine detail (synth/detail.py); = 1 without;
// with u_flow: where this surface point is in the next and the previous frame (x, y pixels, y down;
// depth mm; +1 facing the camera there, -1 turned away): render.py's RenderOutput.seen_next / seen_prev.
// Optional outputs sit at the locations render.shader_source gives them (attachment order).
// Shading: Lambertian albedo under 2nd-order SH irradiance (Ramamoorthi & Hanrahan 2001) plus a
// Blinn-Phong lobe towards the dominant light direction (the SH linear band); hair: Kajiya-Kay
// lobes along the strand direction (Kajiya & Kay 1989, with Scheuermann's shifted second lobe).
uniform bool u_shade;
// Per sample (SAMPLES of them in a layered batch, else 1), indexed by v_sample:
uniform vec3 u_sh[9 * SAMPLES];  // radiance SH coefficients per RGB channel, camera space
uniform float u_appearance[APPEARANCE_SIZE * SAMPLES];  // data.fields.APPEARANCE_NAMES
uniform sampler2D u_noise;     // tiling noise: r low-frequency, g pore-scale, b mid-frequency, a hair streaks
uniform bool u_use_albedo_map; // skin albedo from a UV map (a fitted photo's, linear RGB) instead of the procedural one
uniform sampler2D u_albedo_map;  // spans u in [0, u_albedo_tiles) (UDIM tiles side by side), v in [0, 1)
uniform float u_albedo_tiles;
// Fine detail (synth/detail.py, detail_bank.py): displacement d (mm along the coarse normal,
// positive outwards) = sum of crease templates x weights + noise x weights + a photo's map, x skin mask.
uniform bool u_detail;
uniform sampler2D u_reference;      // mean-face position (mm) per texel; a = the skin mask
uniform sampler2DArray u_creases;   // layers of 4 crease templates (detail.CREASES order)
uniform sampler3D u_pores;          // tiling noise: pits, coarse pores, lines along x, lines along y
uniform sampler2D u_photo_detail;   // a fitted photo's static displacement, mm
uniform bool u_use_photo_detail;
uniform vec4 u_crease_weight[3];    // mm per template unit
uniform vec4 u_pore_weight;         // mm per noise unit
uniform float u_noise_frequency;    // voxels per mm
uniform vec3 u_noise_origin;        // voxels
uniform float u_noise_voxels;
uniform float u_photo_detail_weight;
uniform float u_detail_tiles;
uniform vec2 u_detail_texels;       // the maps' size in texels (u_detail_tiles * S, S)
uniform bool u_flow;
uniform vec4 u_prev_intrinsics;     // fx, fy, cx, cy of the previous / next frame's camera
uniform vec4 u_next_intrinsics;
uniform float u_lod_bias;           // log2(supersample): every pass samples the ground-truth pass's mip level

in vec3 v_position;
in vec3 v_normal;
in vec2 v_uv;
flat in float v_label;
flat in float v_material;
in vec4 v_weights;
in vec3 v_tangent;
in vec3 v_colour;
in vec3 v_prev;
in vec3 v_next;
flat in int v_sample;  // the sample's layer in a layered batch; 0 when drawn one at a time

layout(location = 0) out vec4 out_colour;
layout(location = 1) out vec4 out_geometry;
layout(location = 2) out float out_label;
layout(location = FINE_LOCATION) out vec4 out_fine;
layout(location = NEXT_LOCATION) out vec4 out_next;
layout(location = PREV_LOCATION) out vec4 out_prev;

const float PI = 3.14159265;
vec3 sh(int k) { return u_sh[9 * v_sample + k]; }
float appearance(int k) { return u_appearance[APPEARANCE_SIZE * v_sample + k]; }
SH_CONSTANTS  // camera.glsl_sh_constants(): the SH basis constants and band factors
SKIN_CONSTANTS  // skin.glsl_skin_constants(): white, melanin and haemoglobin absorption, the iris palette

vec3 irradiance(vec3 n) {
    // E(n) / pi with the clamped-cosine kernel's band factors pi, 2pi/3, pi/4 folded in.
    vec3 e = a0 * c0 * sh(0)
        + a1 * c1 * (sh(1) * n.y + sh(2) * n.z + sh(3) * n.x)
        + a2 * (c2 * (sh(4) * n.x * n.y + sh(5) * n.y * n.z + sh(7) * n.x * n.z)
                + c3 * sh(6) * (3.0 * n.z * n.z - 1.0) + c4 * sh(8) * (n.x * n.x - n.y * n.y));
    return max(e, vec3(0.0));
}

vec3 skin_albedo() {
    float melanin = appearance(0), haemoglobin = appearance(1);
    vec2 offset = vec2(appearance(12), appearance(13));
    vec4 low = texture(u_noise, v_uv * 3.0 + offset);
    vec4 fine = texture(u_noise, v_uv * 40.0 + offset * 7.0);
    // Absorption by melanin (falls with wavelength) and haemoglobin (green/blue), R G B ~ 650 550 450 nm.
    float m = melanin_base + melanin_scale * melanin * (1.0 + 0.08 * (low.b - 0.5));
    float h = haemoglobin_scale * haemoglobin + 0.25 * appearance(4) * v_weights.z + 0.2 * v_weights.w;
    h += appearance(5) * 0.8 * max(low.r - 0.45, 0.0);
    vec3 albedo = skin_white * exp(-m * melanin_absorption - h * haemoglobin_absorption);
    albedo *= 1.0 - appearance(6) * 0.12 * (fine.g - 0.5);
    vec3 lips = albedo * mix(vec3(0.85, 0.72, 0.72), vec3(0.85, 0.42, 0.45), appearance(2));
    albedo = mix(albedo, lips, v_weights.x);
    float hair = v_weights.y * appearance(3) * smoothstep(0.25, 0.75, texture(u_noise, v_uv * vec2(60.0, 15.0)).a);
    albedo = mix(albedo, vec3(0.035, 0.025, 0.018) + 0.15 * albedo, clamp(hair, 0.0, 0.9));
    return albedo;
}

// Props (materials 5..8, synth/props): hair, cloth, skin of hands, glasses frames.
float hair_strands() {
    // level 0 (explicit LOD): the ground-truth pass and the supersampled colour pass must keep
    // the same fragments, and mip levels follow each pass's own pixel size
    return smoothstep(0.25, 0.75, textureLod(u_noise, v_uv, 0.0).a);
}

bool hair_kept() {
    float level = v_weights.x, coverage = v_weights.y;
    if (level <= 0.0) return coverage > 0.25 + 0.5 * textureLod(u_noise, v_uv * 3.0, 0.0).g;  // the roots: opaque inside
    return hair_strands() * coverage > level;
}

bool lash_kept() {
    // lashes along the card (u), each narrowing from its root (tip = 0) to its tip (tip = 1)
    float tip = v_weights.x;
    float x = fract(v_uv.x * 160.0 + 0.5 * textureLod(u_noise, vec2(v_uv.x * 2.0, 0.37), 0.0).b);
    return tip < 0.96 && abs(x - 0.5) < 0.22 * (1.0 - 0.8 * tip);
}

vec3 albedo_of(int material) {
    if (material == 9) return v_colour;
    if (material == 5) return v_colour * (0.7 + 0.6 * hair_strands()) * (0.45 + 0.55 * v_weights.x);
    if (material == 6) return v_colour * (0.8 + 0.4 * texture(u_noise, v_uv * 6.0).g) * (0.9 + 0.2 * texture(u_noise, v_uv).r);
    if (material == 7) return v_colour * (0.9 + 0.2 * texture(u_noise, v_uv * 2.0).b);
    if (material == 8) return v_colour;
    if (u_use_albedo_map && (material == 0 || material == 4))  // skin and eye sockets; eyes, teeth stay procedural
        return texture(u_albedo_map, vec2(v_uv.x / u_albedo_tiles, v_uv.y)).rgb;
    if (material == 0) return skin_albedo();
    if (material == 1) return vec3(0.22, 0.045, 0.05);                        // mouth interior
    if (material == 2) return mix(vec3(0.75, 0.72, 0.62), vec3(0.62, 0.52, 0.32), appearance(11));
    if (material == 3) {                                                       // eyeball: pupil, iris, sclera
        float r = v_weights.x;
        float hue = appearance(9);
        vec3 iris = hue < iris_edges[0] ? iris_colours[0]                  // skin.IRIS_COLOURS
                  : hue < iris_edges[1] ? iris_colours[1]
                  : hue < iris_edges[2] ? iris_colours[2] : iris_colours[3];
        iris *= (appearance(10) + 0.3) * (0.8 + 0.4 * texture(u_noise, v_uv * 30.0).a);
        vec3 sclera = vec3(0.62, 0.58, 0.54);
        vec3 eye = mix(vec3(0.008), iris, smoothstep(0.3, 0.4, r));
        eye = mix(eye, iris * 0.35, smoothstep(0.8, 0.95, r));
        return mix(eye, sclera, smoothstep(0.95, 1.05, r));
    }
    return skin_albedo() * vec3(0.8, 0.5, 0.5);                                // eye socket
}

vec3 to_srgb(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, c));
}

vec3 kajiya_kay(vec3 l, vec3 view, vec3 n, vec3 albedo, float strength) {
    vec3 t = normalize(v_tangent);
    vec3 h = normalize(l + view);
    vec3 shifted = normalize(t + 0.2 * n);
    float primary = pow(sqrt(max(1.0 - pow(dot(t, h), 2.0), 0.0)), 80.0);
    float secondary = pow(sqrt(max(1.0 - pow(dot(shifted, h), 2.0), 0.0)), 20.0);
    return strength * v_weights.z * (0.5 * primary + 2.0 * albedo * secondary) * smoothstep(-0.1, 0.3, dot(n, l));
}

float displacement(vec2 st, float lod, float lod3) {
    vec4 c0 = textureLod(u_creases, vec3(st, 0.0), lod);
    vec4 c1 = textureLod(u_creases, vec3(st, 1.0), lod);
    vec4 c2 = textureLod(u_creases, vec3(st, 2.0), lod);
    float d = dot(c0, u_crease_weight[0]) + dot(c1, u_crease_weight[1]) + dot(c2, u_crease_weight[2]);
    vec4 reference = textureLod(u_reference, st, lod);
    vec3 voxel = reference.xyz * u_noise_frequency + u_noise_origin;
    d += dot(textureLod(u_pores, voxel / u_noise_voxels, lod3) - 0.5, u_pore_weight);
    if (u_use_photo_detail) d += u_photo_detail_weight * textureLod(u_photo_detail, st, lod).r;
    return d * reference.a;
}

// The detailed surface at this pixel: its normal from the displacement's gradient along the
// surface (tangents dp/du, dp/dv from the screen derivatives of position and UV), and the depth
// where the pixel's ray meets its tangent plane at p + d n. Derivatives are taken by the caller,
// in uniform control flow.
vec4 seen_from(vec3 p, vec4 k, float here) {
    // The same triangle in the other frame keeps its orientation relative to the screen derivatives:
    // the sign of its facing term there times this frame's says whether it still faces the camera.
    float depth = -p.z;
    float there = dot(cross(dFdx(p), dFdy(p)), -p);
    return vec4(k.x * p.x / depth + k.z, k.w - k.y * p.y / depth, depth, there * here > 0.0 ? 1.0 : -1.0);
}

void fine_surface(vec3 n, vec3 px, vec3 py, vec2 sx, vec2 sy, out vec3 n_fine, out float depth_fine) {
    vec2 st = vec2(v_uv.x / u_detail_tiles, v_uv.y);
    vec2 tx = sx * u_detail_texels, ty = sy * u_detail_texels;
    float lod = max(0.5 * log2(max(max(dot(tx, tx), dot(ty, ty)), 1e-12)) + u_lod_bias, 0.0);
    float mm = sqrt(max(dot(px, px), dot(py, py)));  // mm per pixel
    float lod3 = max(log2(max(mm * u_noise_frequency, 1e-6)) + u_lod_bias, 0.0);
    vec2 texel = exp2(floor(lod)) / u_detail_texels;  // one texel of the level read, in st
    float d = displacement(st, lod, lod3);
    float du = (displacement(st + vec2(texel.x, 0.0), lod, lod3) - displacement(st - vec2(texel.x, 0.0), lod, lod3)) / (2.0 * texel.x);
    float dv = (displacement(st + vec2(0.0, texel.y), lod, lod3) - displacement(st - vec2(0.0, texel.y), lod, lod3)) / (2.0 * texel.y);
    n_fine = n;
    depth_fine = -v_position.z;
    float det = sx.x * sy.y - sx.y * sy.x;
    if (abs(det) < 1e-20) return;
    vec3 tu = (px * sy.y - py * sx.y) / det;  // [px py] = [tu tv] [sx sy]
    vec3 tv = (py * sx.x - px * sy.x) / det;
    tu += (du - dot(tu, n)) * n;  // the tangent plane of n, then the displacement's slope
    tv += (dv - dot(tv, n)) * n;
    vec3 m = normalize(cross(tu, tv));
    n_fine = dot(m, n) < 0.0 ? -m : m;
    vec3 ray = v_position / -v_position.z;  // depth 1
    float facing = min(dot(ray, n_fine), -0.2);
    depth_fine = -v_position.z + d * dot(n, n_fine) / facing;
}

void main() {
    int material = int(v_material + 0.5);
    if ((material == 5 && !hair_kept()) || (material == 9 && !lash_kept())) discard;  // in every pass: the ground truth shows the hair the image does
    vec3 n = normalize(v_normal);
    out_geometry = vec4(-v_position.z, n);
    out_label = v_label / 255.0;
    vec3 px = dFdx(v_position), py = dFdy(v_position);
    if (u_flow) {
        // The point is the same barycentric mix of its triangle's vertices in every frame, and
        // perspective-correct interpolation gives exactly that mix: v_next is this point in frame t+1.
        float here = dot(cross(px, py), -v_position);  // > 0: front-facing here (a drawn fragment)
        out_next = seen_from(v_next, u_next_intrinsics, here);
        out_prev = seen_from(v_prev, u_prev_intrinsics, here);
    }
    vec2 sx = dFdx(v_uv) / vec2(u_detail_tiles, 1.0), sy = dFdy(v_uv) / vec2(u_detail_tiles, 1.0);
    vec3 n_fine = n;
    float depth_fine = -v_position.z;
    if (u_detail && material == 0) fine_surface(n, px, py, sx, sy, n_fine, depth_fine);
    out_fine = vec4(depth_fine, n_fine);
    n = n_fine;  // the image shows the detail: shading and highlights follow the fine normal
    if (!u_shade) {
        out_colour = vec4(0.0);
        return;
    }
    vec3 albedo = albedo_of(material);
    vec3 colour = albedo * irradiance(n);
    vec3 l_dir = vec3(dot(sh(3), vec3(0.2126, 0.7152, 0.0722)),
                      dot(sh(1), vec3(0.2126, 0.7152, 0.0722)),
                      dot(sh(2), vec3(0.2126, 0.7152, 0.0722)));
    float strength = length(l_dir) / c1;
    if (strength > 1e-4) {
        vec3 l = l_dir / (strength * c1);
        vec3 view = normalize(-v_position);
        vec3 h = normalize(l + view);
        vec3 light_colour = sh(0) / max(sh(0).g, 1e-4);
        if (material == 5) {
            colour += kajiya_kay(l, view, n, albedo, strength) * light_colour;
        } else {
            float shininess = material == 3 ? 120.0 : (material == 8 ? 60.0 : (material >= 5 ? 10.0 : appearance(8) * (1.0 + v_weights.x)));
            float ks = material == 3 ? 0.6 : (material == 0 ? appearance(7) * (1.0 + 0.5 * v_weights.x)
                                                            : (material == 8 ? 0.5 : (material == 7 ? 0.08 : 0.05)));
            float spec = ks * strength * pow(max(dot(n, h), 0.0), shininess) * step(0.0, dot(n, l));
            colour += spec * (shininess + 8.0) / (8.0 * PI) * light_colour;
        }
    }
    out_colour = vec4(to_srgb(colour), 1.0);
}
