import type { Registry } from 'prom-client'

export interface Metrics {
  registry: Registry
  contentType: string
  scrape (): Promise<string>
  close (): void
}

export declare function createMetrics (options?: { registry?: Registry, prefix?: string }): Metrics
