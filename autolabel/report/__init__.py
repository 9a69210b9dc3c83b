"""autolabel.report"""
