import { z } from "zod";

/** Schemas of the `--output=json` shapes Ferry reads (qemu 7.2); unknown keys are kept. */

const bitmapSchema = z.looseObject({
  name: z.string(),
  granularity: z.number(),
  flags: z.array(z.string()),
});

export const infoSchema = z.looseObject({
  filename: z.string(),
  format: z.string(),
  "virtual-size": z.number(),
  "actual-size": z.number().optional(),
  "cluster-size": z.number().optional(),
  "dirty-flag": z.boolean().optional(),
  "backing-filename": z.string().optional(),
  "full-backing-filename": z.string().optional(),
  "backing-filename-format": z.string().optional(),
  "format-specific": z
    .looseObject({
      type: z.string(),
      data: z
        .looseObject({
          compat: z.string().optional(),
          corrupt: z.boolean().optional(),
          bitmaps: z.array(bitmapSchema).optional(),
        })
        .optional(),
    })
    .optional(),
});
export const infoChainSchema = z.array(infoSchema);

export const checkSchema = z.looseObject({
  filename: z.string(),
  format: z.string(),
  "check-errors": z.number(),
  "image-end-offset": z.number().optional(),
  "total-clusters": z.number().optional(),
  "allocated-clusters": z.number().optional(),
  corruptions: z.number().optional(),
  leaks: z.number().optional(),
  "corruptions-fixed": z.number().optional(),
  "leaks-fixed": z.number().optional(),
});

export const measureSchema = z.looseObject({
  required: z.number(),
  "fully-allocated": z.number(),
  bitmaps: z.number().optional(),
});

export const mapSchema = z.array(
  z.looseObject({
    start: z.number(),
    length: z.number(),
    depth: z.number(),
    zero: z.boolean(),
    data: z.boolean(),
    present: z.boolean().optional(),
    offset: z.number().optional(),
  }),
);

export type RawInfo = z.infer<typeof infoSchema>;

export interface Bitmap {
  name: string;
  granularity: number;
  /** `auto` = enabled (tracks writes); `in-use` = left open by a crashed writer (inconsistent). */
  flags: string[];
}

/** `qemu-img info` of one image, camel-cased; `raw` keeps qemu's own JSON. */
export interface ImageInfo {
  filename: string;
  format: string;
  virtualSize: number;
  actualSize?: number;
  clusterSize?: number;
  dirtyFlag?: boolean;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFormat?: string;
  /** qcow2 only: "0.10" (v2) or "1.1" (v3). */
  compat?: string;
  corrupt?: boolean;
  bitmaps: Bitmap[];
  raw: RawInfo;
}

export interface CheckResult {
  filename: string;
  format: string;
  checkErrors: number;
  corruptions: number;
  leaks: number;
  imageEndOffset?: number;
  totalClusters?: number;
  allocatedClusters?: number;
  raw: z.infer<typeof checkSchema>;
}

export interface MeasureResult {
  required: number;
  fullyAllocated: number;
  bitmaps?: number;
}

export interface MapExtent {
  start: number;
  length: number;
  depth: number;
  zero: boolean;
  data: boolean;
  present?: boolean;
  offset?: number;
}

export function toImageInfo(raw: RawInfo): ImageInfo {
  const data = raw["format-specific"]?.data;
  const info: ImageInfo = {
    filename: raw.filename,
    format: raw.format,
    virtualSize: raw["virtual-size"],
    bitmaps: (data?.bitmaps ?? []).map((b) => ({ name: b.name, granularity: b.granularity, flags: [...b.flags] })),
    raw,
  };
  if (raw["actual-size"] !== undefined) info.actualSize = raw["actual-size"];
  if (raw["cluster-size"] !== undefined) info.clusterSize = raw["cluster-size"];
  if (raw["dirty-flag"] !== undefined) info.dirtyFlag = raw["dirty-flag"];
  if (raw["backing-filename"] !== undefined) info.backingFilename = raw["backing-filename"];
  if (raw["full-backing-filename"] !== undefined) info.fullBackingFilename = raw["full-backing-filename"];
  if (raw["backing-filename-format"] !== undefined) info.backingFormat = raw["backing-filename-format"];
  if (data?.compat !== undefined) info.compat = data.compat;
  if (data?.corrupt !== undefined) info.corrupt = data.corrupt;
  return info;
}
